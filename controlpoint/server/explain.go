package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/fluxgate/fluxgate/api"
	"github.com/fluxgate/fluxgate/controlpoint"
)

// serveExplain is POST /v1/explain: what the engine would decide for a
// flow, without taking tokens.
func (s *Server) serveExplain(w http.ResponseWriter, r *http.Request) {
	body, code, err := readJSONBody(w, r)
	if err != nil {
		s.badRequest(w, r, code, err.Error())
		return
	}
	var in api.ExplainRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		s.badRequest(w, r, http.StatusBadRequest, "invalid explain request: "+err.Error())
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		s.badRequest(w, r, http.StatusBadRequest, "invalid explain request: data after the JSON object")
		return
	}
	switch {
	case in.ControlPoint == "":
		s.badRequest(w, r, http.StatusBadRequest, controlpoint.ErrNoControlPoint.Error())
		return
	case in.Tokens < 0:
		s.badRequest(w, r, http.StatusBadRequest, controlpoint.ErrBadTokens.Error())
		return
	}
	req := controlpoint.Request{ControlPoint: in.ControlPoint, Labels: in.Labels, Tokens: in.Tokens}
	writeJSON(w, http.StatusOK, s.engine.Explain(r.Context(), s.now(), &req))
}

// serveControlPoints is GET /v1/controlpoints.
func (s *Server) serveControlPoints(w http.ResponseWriter, _ *http.Request) {
	cps := s.engine.ControlPoints()
	if cps == nil {
		cps = []api.ControlPoint{}
	}
	writeJSON(w, http.StatusOK, api.ControlPointList{ControlPoints: cps})
}
