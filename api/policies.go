package api

import "time"

// PolicyInfo is how the admin API lists a policy
// (GET /v1/policies/{namespace}/{name} with Accept: application/json).
type PolicyInfo struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	File      string    `json:"file"`
	Hash      string    `json:"hash"`
	LoadedAt  time.Time `json:"loaded_at"`
	Source    string    `json:"source,omitempty"`
}

// PolicyList is the body of GET /v1/policies.
type PolicyList struct {
	Version  uint64       `json:"version"`
	Policies []PolicyInfo `json:"policies"`
	Errors   []string     `json:"errors,omitempty"`
}
