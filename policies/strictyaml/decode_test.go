package strictyaml

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

type scalars struct {
	S   string        `yaml:"s"`
	B   bool          `yaml:"b"`
	I   int           `yaml:"i"`
	I8  int8          `yaml:"i8"`
	I64 int64         `yaml:"i64"`
	U   uint          `yaml:"u"`
	U16 uint16        `yaml:"u16"`
	F   float64       `yaml:"f"`
	F32 float32       `yaml:"f32"`
	D   time.Duration `yaml:"d"`
	Any any           `yaml:"any"`
}

type Base struct {
	Name string `yaml:"name" required:"true"`
	Kind string `yaml:"kind"`
}

type outer struct {
	Base   `yaml:",inline"`
	Ptr    *scalars          `yaml:"ptr"`
	List   []int             `yaml:"list"`
	Items  []*Base           `yaml:"items"`
	Labels map[string]string `yaml:"labels"`
	ByName map[string]*Base  `yaml:"by_name"`
	Skip   string            `yaml:"-"`
	NoTag  string
	hidden string
}

// upper decodes itself: it accepts a string and upper-cases it.
type upper string

func (u *upper) UnmarshalStrictYAML(d *Decoder, n *yaml.Node) {
	var s string
	d.Decode(n, &s)
	if s == "bad" {
		d.Errorf(n, "bad is bad")
	}
	*u = upper(strings.ToUpper(s))
}

type withUpper struct {
	U  upper   `yaml:"u"`
	UP *upper  `yaml:"up"`
	US []upper `yaml:"us"`
}

func TestUnmarshalScalars(t *testing.T) {
	tests := []struct {
		in   string
		want scalars
	}{
		{"s: hello", scalars{S: "hello"}},
		{`s: "5"`, scalars{S: "5"}},
		{"s: ''", scalars{}},
		{"b: true", scalars{B: true}},
		{"b: False", scalars{}},
		{"i: -42", scalars{I: -42}},
		{"i: 0x1f", scalars{I: 31}},
		{"i: 1_000", scalars{I: 1000}},
		{"i8: 127", scalars{I8: 127}},
		{"i64: 9223372036854775807", scalars{I64: math.MaxInt64}},
		{"u: 7", scalars{U: 7}},
		{"u16: 65535", scalars{U16: 65535}},
		{"f: 1.5", scalars{F: 1.5}},
		{"f: 3", scalars{F: 3}},
		{"f: -.inf", scalars{F: math.Inf(-1)}},
		{"f32: 0.25", scalars{F32: 0.25}},
		{"d: 100ms", scalars{D: 100 * time.Millisecond}},
		{"d: 1m30s", scalars{D: 90 * time.Second}},
		{"d: 0", scalars{}},
		{"any: {a: [1, x]}", scalars{Any: map[string]any{"a": []any{1, "x"}}}},
		{"any: 5", scalars{Any: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got scalars
			if err := Unmarshal("", []byte(tt.in), &got); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUnmarshalNaN(t *testing.T) {
	var got scalars
	if err := Unmarshal("", []byte("f: .nan"), &got); err != nil || !math.IsNaN(got.F) {
		t.Fatalf("got %v, %v; want NaN", got.F, err)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"s: 5", []string{`t.yaml:1:4: expected string, got int 5`}},
		{"s: true", []string{`t.yaml:1:4: expected string, got bool true`}},
		{"s: [a]", []string{`t.yaml:1:4: expected string, got sequence`}},
		{"b: yes", []string{`t.yaml:1:4: expected bool, got string "yes"`}},
		{"b: 1", []string{`t.yaml:1:4: expected bool, got int 1`}},
		{"i: 1.5", []string{`t.yaml:1:4: expected int, got float 1.5`}},
		{"i: abc", []string{`t.yaml:1:4: expected int, got string "abc"`}},
		{"i8: 128", []string{`t.yaml:1:5: value 128 out of range for int8`}},
		{"u: -1", []string{`t.yaml:1:4: value -1 out of range for uint`}},
		{"u16: 65536", []string{`t.yaml:1:6: value 65536 out of range for uint16`}},
		{"i64: 9223372036854775808", []string{`t.yaml:1:6: value 9223372036854775808 out of range for int64`}},
		{"f: abc", []string{`t.yaml:1:4: expected float, got string "abc"`}},
		{"f32: 1e39", []string{`t.yaml:1:6: value 1e39 out of range for float32`}},
		{"d: abc", []string{`t.yaml:1:4: invalid duration "abc": want a number with a unit, such as 100ms or 1m30s`}},
		{"d: 5", []string{`t.yaml:1:4: invalid duration "5": want a number with a unit, such as 100ms or 1m30s`}},
		{"d: -1s", []string{`t.yaml:1:4: invalid duration "-1s": must not be negative`}},
		{"d: {a: 1}", []string{`t.yaml:1:4: expected duration, got mapping`}},
		{"x: 1", []string{`t.yaml:1:1: unknown field "x" in the document; valid fields: any, b, d, f, f32, i, i64, i8, s, u, u16`}},
		{"s: a\ns: b", []string{`t.yaml:2:1: duplicate key "s", first defined at line 1`}},
		{"[1]", []string{`t.yaml:1:1: expected mapping, got sequence`}},
		{"{[a]: 1}", []string{`t.yaml:1:2: mapping key must be a scalar, got sequence`}},
		{ // all errors, in position order
			"i: x\nzz: 1\nd: 1h\nb: 2\n",
			[]string{
				`t.yaml:1:4: expected int, got string "x"`,
				`t.yaml:2:1: unknown field "zz" in the document; valid fields: any, b, d, f, f32, i, i64, i8, s, u, u16`,
				`t.yaml:4:4: expected bool, got int 2`,
			},
		},
		{"s: [", []string{`t.yaml:1: syntax error: did not find expected node content`}},
		{"s: a\n---\ns: b\n", []string{`t.yaml:2:1: expected a single YAML document, found another`}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got scalars
			err := Unmarshal("t.yaml", []byte(tt.in), &got)
			checkErrors(t, err, tt.want)
		})
	}
}

func checkErrors(t *testing.T, err error, want []string) {
	t.Helper()
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error %v (%T) is not an ErrorList", err, err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got %q\nwant %q", got, want)
	}
}

func TestUnmarshalStructures(t *testing.T) {
	in := `
name: n
kind: k
ptr: {s: x}
list: [1, 2]
items: [{name: a}, null, {name: b, kind: c}]
labels: {a: "1", b: x}
by_name: {one: {name: o}}
notag: t
`
	want := outer{
		Base:   Base{Name: "n", Kind: "k"},
		Ptr:    &scalars{S: "x"},
		List:   []int{1, 2},
		Items:  []*Base{{Name: "a"}, nil, {Name: "b", Kind: "c"}},
		Labels: map[string]string{"a": "1", "b": "x"},
		ByName: map[string]*Base{"one": {Name: "o"}},
		NoTag:  "t",
	}
	var got outer
	if err := Unmarshal("", []byte(in), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestDefaultsKept(t *testing.T) {
	got := outer{
		Base:   Base{Name: "keep", Kind: "default-kind"},
		Ptr:    &scalars{S: "old", I: 7},
		List:   []int{9, 9, 9},
		Labels: map[string]string{"old": "v"},
	}
	in := "name: new\nptr: {s: new}\nlist: [1]\nlabels: {a: b}\n"
	if err := Unmarshal("", []byte(in), &got); err != nil {
		t.Fatal(err)
	}
	want := outer{
		Base:   Base{Name: "new", Kind: "default-kind"},
		Ptr:    &scalars{S: "new", I: 7},                // decoded onto the existing pointee
		List:   []int{1},                                // slices are replaced
		Labels: map[string]string{"old": "v", "a": "b"}, // maps are merged into
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}

	// null keeps non-pointer values and clears pointers.
	if err := Unmarshal("", []byte("name: n\nkind: null\nptr: ~\n"), &got); err != nil {
		t.Fatal(err)
	}
	if got.Kind != "default-kind" || got.Ptr != nil {
		t.Errorf("after nulls: kind %q ptr %v", got.Kind, got.Ptr)
	}
}

func TestStructErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"kind: k", []string{`t.yaml:1:1: missing required field "name" in the document`}},
		{"name: null", []string{`t.yaml:1:1: missing required field "name" in the document`}},
		{"name: n\nitems: [{kind: k}]", []string{`t.yaml:2:9: missing required field "name" in items[0]`}},
		{"name: n\nskip: x", []string{`t.yaml:2:1: unknown field "skip" in the document; valid fields: by_name, items, kind, labels, list, name, notag, ptr`}},
		{"name: n\nhidden: x", []string{`t.yaml:2:1: unknown field "hidden" in the document; valid fields: by_name, items, kind, labels, list, name, notag, ptr`}},
		{"name: n\nlabels: [a]", []string{`t.yaml:2:9: expected mapping, got sequence`}},
		{"name: n\nlabels: {a: 1}", []string{`t.yaml:2:13: expected string, got int 1`}},
		{"name: n\nlabels: {a: x, a: y}", []string{`t.yaml:2:16: duplicate key "a", first defined at line 2`}},
		{"name: n\nlist: {a: 1}", []string{`t.yaml:2:7: expected sequence, got mapping`}},
		{"name: n\nlist: [1, x, 3.5]", []string{`t.yaml:2:11: expected int, got string "x"`, `t.yaml:2:14: expected int, got float 3.5`}},
		{"name: n\nby_name: {a: {nme: x}}", []string{
			`t.yaml:2:14: missing required field "name" in by_name.a`,
			`t.yaml:2:15: unknown field "nme" in by_name.a; valid fields: kind, name`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got outer
			checkErrors(t, Unmarshal("t.yaml", []byte(tt.in), &got), tt.want)
		})
	}
}

func TestAliases(t *testing.T) {
	in := `
name: &n shared
kind: *n
items: [&b {name: x, kind: y}, *b]
by_name:
  base: &base {name: a, kind: k}
  merged:
    <<: *base
    name: b
`
	var got outer
	if err := Unmarshal("", []byte(in), &got); err != nil {
		t.Fatal(err)
	}
	want := outer{
		Base:   Base{Name: "shared", Kind: "shared"},
		Items:  []*Base{{Name: "x", Kind: "y"}, {Name: "x", Kind: "y"}},
		ByName: map[string]*Base{"base": {Name: "a", Kind: "k"}, "merged": {Name: "b", Kind: "k"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

func TestAliasBomb(t *testing.T) {
	in := `
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
`
	var got struct {
		A []string               `yaml:"a"`
		B [][]string             `yaml:"b"`
		C [][][]string           `yaml:"c"`
		D [][][][]string         `yaml:"d"`
		E [][][][][]string       `yaml:"e"`
		F [][][][][][]string     `yaml:"f"`
		G [][][][][][][]string   `yaml:"g"`
		H [][][][][][][][]string `yaml:"h"`
	}
	err := Unmarshal("t.yaml", []byte(in), &got)
	if err == nil || !strings.Contains(err.Error(), "too many nodes expanded from aliases") {
		t.Fatalf("err = %v", err)
	}
	if n := len(err.(ErrorList)); n != 1 {
		t.Errorf("%d errors, want 1", n)
	}

	// The document expands to 10^8 strings. Decoding stops at the limit:
	// the decoder counts every node it visits through an alias, and after
	// the limit only the loops it is in may look at their next element.
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(in), &doc); err != nil {
		t.Fatal(err)
	}
	d := &Decoder{File: "t.yaml"}
	d.Decode(&doc, &got)
	if !d.stopped || d.expanded < maxExpanded || d.expanded > maxExpanded+100 {
		t.Errorf("stopped %v after %d nodes expanded from aliases, want stopped just past %d", d.stopped, d.expanded, maxExpanded)
	}
}

func TestAliasCycle(t *testing.T) {
	var got any
	err := Unmarshal("t.yaml", []byte("&a [*a]"), &got)
	if err == nil {
		t.Fatalf("no error, got %v", got)
	}
	var list []*Base
	err = Unmarshal("t.yaml", []byte("&a [*a]"), &list)
	if err == nil {
		t.Fatalf("no error, got %v", list)
	}
}

func TestMergeCycle(t *testing.T) {
	var got Base
	checkErrors(t, Unmarshal("t.yaml", []byte("&a {name: x, <<: *a}"), &got),
		[]string{"t.yaml:1:18: merge key value contains the mapping it is merged into"})
}

func TestTooManyErrors(t *testing.T) {
	in := strings.Repeat("- x\n", 5000)
	var got []int
	err := Unmarshal("t.yaml", []byte(in), &got)
	list, _ := err.(ErrorList)
	if len(list) != maxErrors+1 || !strings.Contains(list[len(list)-1].Msg, "too many errors") {
		t.Fatalf("%d errors, last %v", len(list), list[len(list)-1])
	}
}

func TestUnmarshaler(t *testing.T) {
	var got withUpper
	if err := Unmarshal("", []byte("u: abc\nup: def\nus: [g, h]"), &got); err != nil {
		t.Fatal(err)
	}
	up := upper("DEF")
	want := withUpper{U: "ABC", UP: &up, US: []upper{"G", "H"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	checkErrors(t, Unmarshal("t.yaml", []byte("u: bad\nus: [1]"), &got), []string{
		`t.yaml:1:4: bad is bad`,
		`t.yaml:2:6: expected string, got int 1`,
	})
}

func TestDecodeNode(t *testing.T) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("name: x\nbogus: 1\n"), &doc); err != nil {
		t.Fatal(err)
	}
	var b Base
	checkErrors(t, Decode("f.yaml", &doc, &b), []string{`f.yaml:2:1: unknown field "bogus" in the document; valid fields: kind, name`})
	if b.Name != "x" {
		t.Errorf("name %q", b.Name)
	}
	checkErrors(t, Decode("", &doc, b), []string{`1:1: strictyaml: Decode needs a non-nil pointer, got strictyaml.Base`})
}

func TestEmptyInput(t *testing.T) {
	b := Base{Name: "keep"}
	for _, in := range []string{"", "# only a comment\n", "---\n"} {
		if err := Unmarshal("", []byte(in), &b); err != nil || b.Name != "keep" {
			t.Errorf("%q: %v, %+v", in, err, b)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tt := range []struct {
		e    Error
		want string
	}{
		{Error{File: "f", Line: 1, Column: 2, Msg: "m"}, "f:1:2: m"},
		{Error{Line: 1, Column: 2, Msg: "m"}, "1:2: m"},
		{Error{File: "f", Line: 3, Msg: "m"}, "f:3: m"},
		{Error{File: "f", Msg: "m"}, "f: m"},
		{Error{Msg: "m"}, "m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	l := ErrorList{{Line: 2, Column: 1, Msg: "b"}, {Line: 1, Column: 5, Msg: "a"}, {Line: 2, Column: 1, Msg: "b"}}
	l = l.Dedup()
	if got := l.Error(); got != "1:5: a\n2:1: b" {
		t.Errorf("got %q", got)
	}
}
