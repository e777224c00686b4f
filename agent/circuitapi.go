package agent

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/circuit"
)

// registerCircuitAPI mounts the live signals of circuits and the dynamic
// config of their variables, behind the admin token (auth.go): dynamic
// config changes what circuits do, and both reveal policy configuration
// (signal names and values, capacities, setpoints).
func (a *Agent) registerCircuitAPI() {
	a.HandleHTTP("GET /v1/signals/{namespace}/{name}", http.HandlerFunc(a.getSignals))
	a.HandleHTTP("GET /v1/dynamic-config/{namespace}/{name}", http.HandlerFunc(a.getDynamicConfig))
	a.HandleHTTP("PUT /v1/dynamic-config/{namespace}/{name}", http.HandlerFunc(a.putDynamicConfig))
}

func (a *Agent) getSignals(w http.ResponseWriter, r *http.Request) {
	key := requestKey(r)
	readings, ok := a.circuits.Signals(key)
	if !ok {
		writeError(w, http.StatusNotFound, "no running circuit for policy "+key.String())
		return
	}
	writeJSON(w, http.StatusOK, api.SignalsResponse{Policy: key.String(), At: time.Now(), Signals: apiSignals(readings)})
}

func (a *Agent) getDynamicConfig(w http.ResponseWriter, r *http.Request) {
	vals := a.circuits.Dynamic().All(requestKey(r))
	if vals == nil {
		vals = map[string]any{}
	}
	writeJSON(w, http.StatusOK, vals)
}

// putDynamicConfig replaces a policy's dynamic config with a JSON object of
// numbers and booleans; variables pick the values up on their next tick,
// without a policy reload.
func (a *Agent) putDynamicConfig(w http.ResponseWriter, r *http.Request) {
	key := requestKey(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	var vals map[string]any
	if err := json.Unmarshal(body, &vals); err != nil {
		writeError(w, http.StatusBadRequest, "dynamic config must be a JSON object: "+err.Error())
		return
	}
	for k, v := range vals {
		switch v.(type) {
		case float64, bool:
		default:
			writeError(w, http.StatusBadRequest, "dynamic config value "+k+" must be a number or a boolean")
			return
		}
	}
	a.circuits.Dynamic().Set(key, vals)
	a.logger.Info("dynamic config set", "policy", key.String(), "keys", len(vals))
	writeJSON(w, http.StatusOK, vals)
}

// apiSignals converts a circuit's readings to the API's signals.
func apiSignals(readings []circuit.Reading) []api.Signal {
	out := make([]api.Signal, len(readings))
	for i, r := range readings {
		out[i] = api.Signal{Name: r.Name, Value: r.Value, Valid: r.Valid, At: r.At, Reason: r.Reason, Producer: r.Producer}
	}
	return out
}
