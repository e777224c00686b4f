package policies

import "embed"

// Examples holds the example policies (examples/*.yaml), embedded so that
// tools such as `fluxgate demo` work outside the source tree.
//
//go:embed examples/*.yaml
var Examples embed.FS
