package classifier

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/fluxgate/fluxgate/policies"
)

var sels = []policies.Selector{{ControlPoint: "ingress"}}

// one returns a classifier with one rule computing label "out" with e.
func one(t testing.TB, e *policies.Extractor) *Classifier {
	t.Helper()
	c, err := New(&policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"out": {Extractor: e}}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// extractCase is one flow classified by one extractor: want is the value
// of label "out" ("" with ok false for none) and errPart a substring of
// the error ("" for none).
type extractCase struct {
	name    string
	labels  map[string]string
	want    string
	ok      bool
	errPart string
}

func runExtract(t *testing.T, c *Classifier, cases []extractCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := maps.Clone(tc.labels)
			got, err := c.Classify(context.Background(), "ingress", tc.labels)
			switch {
			case tc.errPart == "" && err != nil:
				t.Fatalf("error %v", err)
			case tc.errPart != "" && (err == nil || !strings.Contains(err.Error(), tc.errPart)):
				t.Fatalf("error %v, want one containing %q", err, tc.errPart)
			}
			v, ok := got["out"]
			if v != tc.want || ok != tc.ok {
				t.Errorf("out = %q (present %v), want %q (present %v)", v, ok, tc.want, tc.ok)
			}
			if len(got) > 1 || got == nil {
				t.Errorf("labels %v, want only out, not nil", got)
			}
			if !maps.Equal(in, tc.labels) {
				t.Errorf("Classify changed its input: %v", tc.labels)
			}
		})
	}
}

func TestFrom(t *testing.T) {
	c := one(t, &policies.Extractor{From: "http.method"})
	runExtract(t, c, []extractCase{
		{name: "hit", labels: map[string]string{"http.method": "GET", "x": "y"}, want: "GET", ok: true},
		{name: "empty value is a value", labels: map[string]string{"http.method": ""}, want: "", ok: true},
		{name: "miss", labels: map[string]string{"http.host": "a"}},
		{name: "nil labels", labels: nil},
	})
}

func TestJSON(t *testing.T) {
	const body = `{"user": {"id": "u-42", "age": 7, "score": 1.50, "admin": false, "tags": ["a", "b"],
		"meta": {"b": 1, "a": [ 1, 2 ]}, "none": null, "a/b": "slash", "m~n": "tilde", "": "empty key"},
		"list": [{"x": 1}, {"x": 2}], "dup": 1, "dup": 2}`
	cases := []struct {
		pointer string
		extractCase
	}{
		{"/user/id", extractCase{name: "string", want: "u-42", ok: true}},
		{"/user/age", extractCase{name: "int", want: "7", ok: true}},
		{"/user/score", extractCase{name: "number keeps its text", want: "1.50", ok: true}},
		{"/user/admin", extractCase{name: "bool", want: "false", ok: true}},
		{"/user/none", extractCase{name: "null", want: "null", ok: true}},
		{"/user/tags", extractCase{name: "array compact", want: `["a","b"]`, ok: true}},
		{"/user/meta", extractCase{name: "object compact, order kept", want: `{"b":1,"a":[1,2]}`, ok: true}},
		{"/user/a~1b", extractCase{name: "escaped slash", want: "slash", ok: true}},
		{"/user/m~0n", extractCase{name: "escaped tilde", want: "tilde", ok: true}},
		{"/user/", extractCase{name: "empty key", want: "empty key", ok: true}},
		{"/list/1/x", extractCase{name: "array index", want: "2", ok: true}},
		{"/dup", extractCase{name: "duplicate key: last wins", want: "2", ok: true}},
		{"/user/nope", extractCase{name: "missing key"}},
		{"/list/2/x", extractCase{name: "index out of range"}},
		{"/list/-", extractCase{name: "past the end"}},
		{"/list/01", extractCase{name: "leading zero"}},
		{"/list/x", extractCase{name: "non-numeric index"}},
		{"/user/id/x", extractCase{name: "into a string"}},
		{"/user/age/0", extractCase{name: "into a number"}},
	}
	for _, tc := range cases {
		c := one(t, &policies.Extractor{JSON: &policies.JSONExtractor{From: "http.request.body", Pointer: tc.pointer}})
		tc.labels = map[string]string{"http.request.body": body}
		runExtract(t, c, []extractCase{tc.extractCase})
	}

	whole := one(t, &policies.Extractor{JSON: &policies.JSONExtractor{From: "b"}})
	id := one(t, &policies.Extractor{JSON: &policies.JSONExtractor{From: "b", Pointer: "/id"}})
	runExtract(t, whole, []extractCase{
		{name: "whole document", labels: map[string]string{"b": ` { "id" : 1 } `}, want: `{"id":1}`, ok: true},
		{name: "whole string document", labels: map[string]string{"b": `"h\u00e9"`}, want: "hé", ok: true},
		{name: "malformed", labels: map[string]string{"b": `{"id": 1`}, errPart: `label "out": json from "b": unexpected end of JSON input`},
		{name: "empty", labels: map[string]string{"b": ``}, errPart: `json from "b"`},
		{name: "trailing garbage", labels: map[string]string{"b": `{} x`}, errPart: `json from "b": invalid character 'x' after top-level value`},
		{name: "absent", labels: map[string]string{"c": "{}"}},
	})
	runExtract(t, id, []extractCase{
		{name: "malformed elsewhere in the document", labels: map[string]string{"b": `{"id": 1, "x": [}`}, errPart: `json from "b"`},
		{name: "scalar document", labels: map[string]string{"b": `3`}},
		{name: "array document", labels: map[string]string{"b": `[1]`}},
	})
}

func TestAddress(t *testing.T) {
	c := one(t, &policies.Extractor{Address: &policies.AddressExtractor{From: "source.address"}})
	l := func(v string) map[string]string { return map[string]string{"source.address": v} }
	runExtract(t, c, []extractCase{
		{name: "ipv4:port", labels: l("10.0.0.1:5432"), want: "10.0.0.1", ok: true},
		{name: "bare ipv4", labels: l("192.168.1.20"), want: "192.168.1.20", ok: true},
		{name: "ipv6 with port", labels: l("[2001:DB8:0:0::1]:443"), want: "2001:db8::1", ok: true},
		{name: "bare ipv6", labels: l("2001:db8:0000::0001"), want: "2001:db8::1", ok: true},
		{name: "bracketed ipv6", labels: l("[::1]"), want: "::1", ok: true},
		{name: "ipv4-mapped", labels: l("[::ffff:10.1.2.3]:80"), want: "10.1.2.3", ok: true},
		{name: "zone dropped", labels: l("[fe80::1%eth0]:80"), want: "fe80::1", ok: true},
		{name: "absent", labels: map[string]string{"x": "1.2.3.4"}},
		{name: "empty", labels: l("")},
		{name: "hostname", labels: l("localhost:80"), errPart: `label "out": address from "source.address": "localhost:80" is not an IP address or ip:port`},
		{name: "bad port", labels: l("1.2.3.4:http"), errPart: "is not an IP address"},
		{name: "unix socket", labels: l("@"), errPart: "is not an IP address"},
	})
}

func TestRulesTogether(t *testing.T) {
	c, err := New(&policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{
		"method": {Extractor: &policies.Extractor{From: "http.method"}},
		"user":   {Extractor: &policies.Extractor{JSON: &policies.JSONExtractor{From: "body", Pointer: "/user"}}},
		"ip":     {Extractor: &policies.Extractor{Address: &policies.AddressExtractor{From: "source.address"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Classify(context.Background(), "ingress", map[string]string{
		"http.method": "POST", "body": "{", "source.address": "nope",
	})
	want := map[string]string{"method": "POST"}
	if !maps.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	// One error per failing rule, in label order.
	if err == nil || !strings.Contains(err.Error(), "classifier: label \"ip\": address") ||
		!strings.Contains(err.Error(), "\nclassifier: label \"user\": json") {
		t.Errorf("error %q", err)
	}
}

// refJSONChild is jsonChild written with encoding/json: the reference the
// hand-written scanner is fuzzed against.
func refJSONChild(doc []byte, tok string) ([]byte, bool) {
	doc = bytes.TrimLeft(doc, " \t\r\n")
	if len(doc) == 0 {
		return nil, false
	}
	switch doc[0] {
	case '{':
		var obj map[string]json.RawMessage
		if json.Unmarshal(doc, &obj) != nil {
			return nil, false
		}
		v, ok := obj[tok]
		return v, ok
	case '[':
		i, ok := arrayIndex(tok)
		var arr []json.RawMessage
		if !ok || json.Unmarshal(doc, &arr) != nil || i >= len(arr) {
			return nil, false
		}
		return arr[i], true
	}
	return nil, false
}

// FuzzJSONPointer checks the JSON extractor against encoding/json on any
// document and pointer: same value, same presence, an error exactly for
// invalid JSON, and no panic.
func FuzzJSONPointer(f *testing.F) {
	f.Add(`{"a": {"b": [1, "x", {"c": null}]}, "a": {"b": [2]}}`, "/a/b/0")
	f.Add(`{"k\"ey": {"\u0061": "v"}, "e\\~/": 1}`, "/k\"ey/a")
	f.Add(`[[], {}, "s\\"]`, "/2")
	f.Add(` {"a" : [ 1 , 2 ] } `, "/a/1")
	f.Add(`{"a/b": 1, "m~n": 2}`, "/a~1b")
	f.Add(`{"": {"": 3}}`, "//")
	f.Add(`{"a": 1`, "/a")
	f.Fuzz(func(t *testing.T, doc, pointer string) {
		pc := &policies.Classifier{Selectors: sels, Rules: map[string]*policies.Rule{"out": {Extractor: &policies.Extractor{
			JSON: &policies.JSONExtractor{From: "doc", Pointer: pointer}}}}}
		c, err := New(pc)
		if (err == nil) != (pc.Validate() == nil) {
			t.Fatalf("New error %v disagrees with Validate", err)
		}
		if err != nil {
			return
		}
		got, err := c.Classify(context.Background(), "cp", map[string]string{"doc": doc})
		if valid := json.Valid([]byte(doc)); valid != (err == nil) {
			t.Fatalf("json.Valid %v, Classify error %v", valid, err)
		}
		if err != nil || !utf8.ValidString(doc) {
			// encoding/json replaces invalid UTF-8 in keys; the scanner
			// compares keys byte for byte.
			return
		}
		want, wantOK := []byte(doc), true
		for _, tok := range c.rules[0].ex.(*jsonExtractor).tokens {
			if want, wantOK = refJSONChild(want, tok); !wantOK {
				break
			}
		}
		v, ok := got["out"]
		if ok != wantOK || (ok && v != jsonText(want)) {
			t.Fatalf("doc %q pointer %q: got %q (%v), want %q (%v)", doc, pointer, v, ok, want, wantOK)
		}
	})
}
