package agent

import "runtime/debug"

// BuildVersion returns the version the binary reports (fluxgate version, the
// fluxgate_build_info metric, the start-up log line). In order of preference:
//
//   - Version, when the link set it: make build stamps the output of
//     git describe --tags --always --dirty (a vMAJOR.MINOR.PATCH tag on a
//     release commit);
//   - the main module version Go recorded: the tag for
//     go install github.com/fluxgate/fluxgate/cmd/fluxgate@vX.Y.Z, a
//     pseudo-version (with +dirty for a modified tree) for go build in a
//     checkout;
//   - "dev+" and the first 12 hex digits of the recorded VCS revision, with
//     ".dirty" for a modified tree;
//   - "dev" when the build recorded none of these (go build -buildvcs=false,
//     go run).
func BuildVersion() string {
	if Version != "" && Version != "dev" {
		return Version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	return versionFromBuildInfo(bi)
}

// versionFromBuildInfo is BuildVersion's fallback for a binary linked
// without Version.
func versionFromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	v := "dev+" + rev
	if modified == "true" {
		v += ".dirty"
	}
	return v
}
