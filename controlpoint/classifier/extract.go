package classifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/fluxgate/fluxgate/policies"
)

// fromExtractor copies the flow label it names.
type fromExtractor string

func (e fromExtractor) extract(labels map[string]string) (string, bool, error) {
	v, ok := labels[string(e)]
	return v, ok, nil
}

// addressExtractor reads the IP address out of the flow label it names.
type addressExtractor string

func (e addressExtractor) extract(labels map[string]string) (string, bool, error) {
	v, ok := labels[string(e)]
	if !ok || v == "" {
		return "", false, nil
	}
	a, err := parseAddress(v)
	if err != nil {
		return "", false, fmt.Errorf("address from %q: %q is not an IP address or ip:port", string(e), v)
	}
	return a.String(), true, nil
}

// parseAddress parses "ip:port", "[ipv6]:port", "ip" or "[ipv6]" into a
// normalised address: IPv4-mapped IPv6 addresses unmapped, no zone.
func parseAddress(s string) (netip.Addr, error) {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(s); err == nil {
		a = ap.Addr()
	} else {
		if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			s = s[1 : len(s)-1]
		}
		if a, err = netip.ParseAddr(s); err != nil {
			return netip.Addr{}, err
		}
	}
	return a.Unmap().WithZone(""), nil
}

// jsonExtractor reads the value at a JSON pointer in the flow label from.
type jsonExtractor struct {
	from   string
	tokens []string // unescaped reference tokens; none for the whole document
}

func newJSONExtractor(j *policies.JSONExtractor) (*jsonExtractor, error) {
	e := &jsonExtractor{from: j.From}
	if j.Pointer == "" {
		return e, nil
	}
	if j.Pointer[0] != '/' {
		return nil, fmt.Errorf("invalid JSON pointer %q", j.Pointer)
	}
	for _, t := range strings.Split(j.Pointer[1:], "/") {
		// RFC 6901 section 4: ~1 first, then ~0, so "~01" is "~1".
		e.tokens = append(e.tokens, strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~"))
	}
	return e, nil
}

func (e *jsonExtractor) extract(labels map[string]string) (string, bool, error) {
	doc, ok := labels[e.from]
	if !ok {
		return "", false, nil
	}
	cur := []byte(doc)
	if !json.Valid(cur) {
		var v any
		err := json.Unmarshal(cur, &v)
		if err == nil { // cannot happen: Valid and Unmarshal agree
			err = errors.New("invalid JSON")
		}
		return "", false, fmt.Errorf("json from %q: %w", e.from, err)
	}
	for _, tok := range e.tokens {
		next, found := jsonChild(cur, tok)
		if !found {
			return "", false, nil
		}
		cur = next
	}
	return jsonText(cur), true, nil
}

// jsonChild returns the member tok of doc, a valid JSON value, if doc is
// an object or an array. Members of an object with duplicate keys: the
// last wins, as in encoding/json. It does not allocate unless a key has
// escapes.
func jsonChild(doc []byte, tok string) ([]byte, bool) {
	i := skipSpace(doc, 0)
	if i == len(doc) {
		return nil, false
	}
	switch doc[i] {
	case '{':
		var found []byte
		i = skipSpace(doc, i+1)
		for i < len(doc) && doc[i] == '"' {
			kEnd := skipString(doc, i)
			key := doc[i:kEnd]
			i = skipSpace(doc, kEnd)
			i = skipSpace(doc, i+1) // ':'
			vEnd := skipValue(doc, i)
			if jsonKeyEquals(key, tok) {
				found = doc[i:vEnd]
			}
			i = skipSpace(doc, vEnd)
			if i < len(doc) && doc[i] == ',' {
				i = skipSpace(doc, i+1)
			}
		}
		return found, found != nil
	case '[':
		n, ok := arrayIndex(tok)
		if !ok {
			return nil, false
		}
		i = skipSpace(doc, i+1)
		for k := 0; i < len(doc) && doc[i] != ']'; k++ {
			vEnd := skipValue(doc, i)
			if k == n {
				return doc[i:vEnd], true
			}
			i = skipSpace(doc, vEnd)
			if i < len(doc) && doc[i] == ',' {
				i = skipSpace(doc, i+1)
			}
		}
	}
	return nil, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipString returns the end of the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the end of the valid JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch b[i] {
		case '"':
			i = skipString(b, i)
			if depth == 0 {
				return i
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
			if depth < 0 { // the end of the enclosing value
				return i
			}
		case ',', ' ', '\t', '\r', '\n':
			if depth == 0 {
				return i
			}
		}
		i++
	}
	return i
}

// jsonKeyEquals reports whether the JSON string literal key is tok.
func jsonKeyEquals(key []byte, tok string) bool {
	raw := key[1 : len(key)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == tok
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == tok
}

// arrayIndex parses an RFC 6901 array index: "0" or digits without a
// leading zero. "-" (past the end) selects nothing.
func arrayIndex(tok string) (int, bool) {
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(tok)
	return i, err == nil
}

// jsonText returns a valid JSON value as a label value: a string
// unquoted, anything else as compact JSON.
func jsonText(v []byte) string {
	v = bytes.TrimSpace(v)
	if len(v) > 0 && v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, v) != nil {
		return string(v)
	}
	return buf.String()
}
