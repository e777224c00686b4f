package agent

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// maxPolicyBytes bounds an admin request body. Policies are a few KB;
// parsing costs far more than the body (a 500 KiB list of one-character
// components takes about 80 MiB of heap to refuse, issue 14), so the
// bound is tight: 512 KiB, and the store parses one PUT at a time.
const maxPolicyBytes = 512 << 10

func policyInfo(e *PolicyEntry, withSource bool) api.PolicyInfo {
	pi := api.PolicyInfo{Namespace: e.Key.Namespace, Name: e.Key.Name, Kind: e.Kind, File: e.File, Hash: e.Hash, LoadedAt: e.LoadedAt}
	if withSource {
		pi.Source = string(e.Source)
	}
	return pi
}

// registerAdmin mounts the policy admin API on mux, behind the admin
// token (auth.go): reading policies reveals configuration, writing them
// changes it.
func (a *Agent) registerAdmin(mux *http.ServeMux) {
	for _, e := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /v1/policies", a.listPolicies},
		{"GET /v1/policies/{namespace}/{name}", a.getPolicy},
		{"PUT /v1/policies/{namespace}/{name}", a.putPolicy},
		{"DELETE /v1/policies/{namespace}/{name}", a.deletePolicy},
	} {
		mux.Handle(e.pattern, a.requireToken(e.pattern, e.h))
	}
}

func (a *Agent) listPolicies(w http.ResponseWriter, _ *http.Request) {
	snap := a.store.Snapshot()
	out := api.PolicyList{Version: snap.Version, Policies: []api.PolicyInfo{}}
	for _, e := range snap.Sorted() {
		out.Policies = append(out.Policies, policyInfo(e, false))
	}
	for _, fe := range snap.Errors {
		out.Errors = append(out.Errors, fe.Err.Error())
	}
	writeJSON(w, http.StatusOK, out)
}

func requestKey(r *http.Request) policies.Key {
	return policies.Key{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
}

func (a *Agent) getPolicy(w http.ResponseWriter, r *http.Request) {
	key := requestKey(r)
	e := a.store.Snapshot().Entries[key]
	if e == nil {
		writeError(w, http.StatusNotFound, "policy "+key.String()+" not found")
		return
	}
	if wantsYAML(r) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(e.Source)
		return
	}
	writeJSON(w, http.StatusOK, policyInfo(e, true))
}

func wantsYAML(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "yaml"
	}
	accept := r.Header.Get("Accept")
	return strings.Contains(accept, "yaml") && !strings.Contains(accept, "json")
}

func (a *Agent) putPolicy(w http.ResponseWriter, r *http.Request) {
	key := requestKey(r)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPolicyBytes))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "policy body: "+err.Error())
		return
	}
	e, created, err := a.store.Put(key, body)
	if err != nil {
		a.writeStoreError(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	a.logger.Info("policy applied through the admin API", "policy", key.String(), "file", e.File, "created", created)
	writeJSON(w, code, policyInfo(e, false))
}

func (a *Agent) deletePolicy(w http.ResponseWriter, r *http.Request) {
	key := requestKey(r)
	if err := a.store.Delete(key); err != nil {
		a.writeStoreError(w, err)
		return
	}
	a.logger.Info("policy deleted through the admin API", "policy", key.String())
	w.WriteHeader(http.StatusNoContent)
}

// writeStoreError maps store errors to statuses: positioned parse errors
// and request mismatches are 400, conflicts 409, unknown keys 404, and
// anything else (a read-only directory, say) 500.
func (a *Agent) writeStoreError(w http.ResponseWriter, err error) {
	var list strictyaml.ErrorList
	switch {
	case errors.As(err, &list):
		details := make([]string, len(list))
		for i, e := range list {
			details[i] = e.Error()
		}
		writeError(w, http.StatusBadRequest, "policy is invalid", details...)
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		a.logger.Error("policy admin request failed", "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}
