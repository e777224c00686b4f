// Package strictyaml decodes YAML into Go values strictly and reports every
// problem with its file, line and column.
//
// gopkg.in/yaml.v3 ignores KnownFields when decoding a *yaml.Node, and it
// stops at the first type error. This package walks the node tree itself,
// using the same `yaml:"name,flags"` struct tags, and collects all errors:
//
//   - an unknown mapping key is an error that lists the valid keys;
//   - a duplicate key is an error;
//   - a value of the wrong kind is an error ("expected int, got string ...");
//   - a field tagged `required:"true"` that is absent (or null) is an error,
//     positioned at the enclosing mapping.
//
// Decoding happens onto the existing value: a field whose key is absent keeps
// its current value, so callers pre-fill defaults before decoding. A null
// value leaves a non-pointer field unchanged and sets a pointer field to nil.
// Slices are replaced, maps are merged into.
//
// Scalars are typed by their YAML tag, never converted across kinds:
//
//   - string fields take only string scalars (plain or quoted). `name: 5`
//     is "expected string, got int 5"; quote it to make it a string;
//   - bool fields take only true/false;
//   - integer fields take only integers (decimal, 0x, 0o, 0b), range checked;
//   - float fields take integers and floats (including .inf and .nan);
//   - time.Duration fields take strings parsed by time.ParseDuration
//     ("100ms", "1m30s"); negative durations are rejected;
//   - interface fields (any) get yaml.v3's generic decoding.
//
// Types that need their own logic implement Unmarshaler; types implementing
// yaml.v3's yaml.Unmarshaler are also honoured, with their error positioned
// at their node. Aliases are followed (merge keys "<<" included), with a cap
// on the work they can cause, so a document cannot blow up the decoder.
//
// Positions are 1-based. An error whose column is unknown (some yaml.v3
// syntax errors carry only a line) prints as "file:line: msg".
//
// A Decoder is not safe for concurrent use; the package functions are.
package strictyaml
