package api

// ExplainRequest is the body of POST /v1/explain: the flow to explain.
// Unknown fields are refused.
type ExplainRequest struct {
	ControlPoint string            `json:"control_point"`
	Labels       map[string]string `json:"labels"`
	Tokens       float64           `json:"tokens"`
}

// Explanation is the body of POST /v1/explain: what the engine would do
// with a flow and why, without taking tokens or counting anything.
type Explanation struct {
	ControlPoint string `json:"control_point"`
	// Labels are the flow's labels after classifiers ran.
	Labels      map[string]string     `json:"labels"`
	Accepted    bool                  `json:"accepted"`
	Reason      string                `json:"reason"`
	Classifiers []ExplainedClassifier `json:"classifiers"`
	FluxMeters  []string              `json:"flux_meters"`
	Components  []ExplainedComponent  `json:"components"`
	// NoPolicy is true when no policy has anything at this control point.
	NoPolicy bool `json:"no_policy"`
}

// ExplainedClassifier is a classifier at the control point.
type ExplainedClassifier struct {
	Policy  string            `json:"policy"`
	Index   int               `json:"index"`
	Matched bool              `json:"matched"`
	Labels  map[string]string `json:"labels,omitempty"`
	Error   string            `json:"error,omitempty"`
}

// ExplainedComponent is a flow-control component at the control point and
// what it would decide.
type ExplainedComponent struct {
	Policy        string `json:"policy"`
	ComponentID   string `json:"component_id"`
	ComponentType string `json:"component_type"`
	// Matched is false when the component's selectors skip the flow.
	Matched bool `json:"matched"`
	DryRun  bool `json:"dry_run"`
	// WouldReject is true when the component would reject the flow (with
	// dry_run it would only count it).
	WouldReject bool    `json:"would_reject"`
	Reason      string  `json:"reason,omitempty"`
	PassThrough bool    `json:"pass_through,omitempty"`
	LimitKey    string  `json:"limit_key,omitempty"`
	Remaining   float64 `json:"remaining"`
	Limit       float64 `json:"limit"`
	WaitSeconds float64 `json:"wait_seconds,omitempty"`
	// Unreached is true when an earlier component would already reject the
	// flow, so this one would not be asked.
	Unreached bool `json:"unreached,omitempty"`
}

// ControlPoint describes a control point flows have arrived at.
type ControlPoint struct {
	Name      string   `json:"name"`
	Checks    uint64   `json:"checks"`
	LabelKeys []string `json:"label_keys"`
}

// ControlPointList is the body of GET /v1/controlpoints.
type ControlPointList struct {
	ControlPoints []ControlPoint `json:"control_points"`
}
