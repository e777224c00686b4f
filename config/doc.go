// Package config loads, validates, lists and edits a YAML configuration
// file whose content is a Go struct: defaults, overridden by the file,
// overridden by PREFIX_<SECTION>_<KEY> environment variables.
//
// A Schema works by reflection over the root type T it is given and knows
// nothing of what T holds: every exported field with a yaml name is a
// section (a struct) or a key (anything else); struct fields tagged
// `yaml:",inline"` add their keys to the enclosing level. A key carries a
// one-line desc tag and, where it applies, a validate tag:
//
//	validate:"port"                      0..65535 (0 picks a free port)
//	validate:"nonempty"                  a non-empty string
//	validate:"urlpath"                   a string starting with "/"
//	validate:"positive"                  a duration or number above zero
//	validate:"oneof=debug|info|warn"     one of the listed values
//
// Several rules are separated by commas. Rules across keys belong in
// Schema.Check; rules with positions in the file belong in the types'
// UnmarshalStrictYAML hooks (package policies/strictyaml).
//
// A Schema is safe for concurrent use once built.
package config
