package alerts

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the name Write gives the rule file.
const FileName = "fluxgate-operational.rules.yaml"

//go:embed fluxgate-operational.rules.yaml
var rules []byte

// Rules returns the rule file's content. The caller may modify it.
func Rules() []byte { return append([]byte(nil), rules...) }

// Write writes the rule file into dir, creating dir if needed, and returns
// the file's path.
func Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("alerts: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := os.WriteFile(path, rules, 0o644); err != nil {
		return "", fmt.Errorf("alerts: %w", err)
	}
	return path, nil
}
