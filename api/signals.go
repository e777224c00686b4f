package api

import "time"

// SignalsResponse is the body of GET /v1/signals/{namespace}/{name}.
type SignalsResponse struct {
	Policy  string    `json:"policy"`
	At      time.Time `json:"at"`
	Signals []Signal  `json:"signals"`
}

// Signal is the latest value of one signal of a circuit.
type Signal struct {
	Name  string    `json:"name"`
	Value float64   `json:"value"`
	Valid bool      `json:"valid"`
	At    time.Time `json:"at"`
	// Reason says why the signal is invalid, when its producer knows.
	Reason string `json:"reason,omitempty"`
	// Producer is the kind of the component that produces it.
	Producer string `json:"producer"`
}
