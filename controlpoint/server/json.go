package server

import (
	"errors"
	"io"
	"mime"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/fluxgate/fluxgate/controlpoint"
	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

var (
	// checkUnmarshal refuses unknown fields (protojson's default).
	checkUnmarshal = protojson.UnmarshalOptions{}
	// checkMarshal writes proto field names and enum names, defaults
	// included, so an accepted flow still shows its reject_reason.
	checkMarshal = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}
)

// serveCheckJSON is POST /v1/check: a CheckRequest in protojson in, a
// CheckResponse out, 200 for any decision.
func (s *Server) serveCheckJSON(w http.ResponseWriter, r *http.Request) {
	body, code, err := readJSONBody(w, r)
	if err != nil {
		s.badRequest(w, r, code, err.Error())
		return
	}
	var in pb.CheckRequest
	if err := checkUnmarshal.Unmarshal(body, &in); err != nil {
		s.badRequest(w, r, http.StatusBadRequest, "invalid check request: "+err.Error())
		return
	}
	req, err := controlpoint.RequestFromProto(&in)
	if err != nil {
		s.badRequest(w, r, http.StatusBadRequest, err.Error())
		return
	}
	out, err := checkMarshal.Marshal(s.check(r.Context(), &req))
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "encode response: " + err.Error()})
		return
	}
	writeBody(w, http.StatusOK, "application/json", append(out, '\n'))
}

// serveFlowEndJSON is POST /v1/flow/end: a FlowEndRequest in protojson
// ({"flow_id":"123","failed":false}; flow_id as a string or a number) in,
// a FlowEndResponse out.
func (s *Server) serveFlowEndJSON(w http.ResponseWriter, r *http.Request) {
	body, code, err := readJSONBody(w, r)
	if err != nil {
		s.badRequest(w, r, code, err.Error())
		return
	}
	var in pb.FlowEndRequest
	if err := checkUnmarshal.Unmarshal(body, &in); err != nil {
		s.badRequest(w, r, http.StatusBadRequest, "invalid flow end request: "+err.Error())
		return
	}
	if in.GetFlowId() == 0 {
		s.badRequest(w, r, http.StatusBadRequest, "flow_id is required: the flow_id of the check response that admitted the flow")
		return
	}
	out, err := checkMarshal.Marshal(&pb.FlowEndResponse{Found: s.engine.EndFlow(s.now(), in.GetFlowId(), in.GetFailed())})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "encode response: " + err.Error()})
		return
	}
	writeBody(w, http.StatusOK, "application/json", append(out, '\n'))
}

// readJSONBody reads a JSON request body of at most MaxBodyBytes. A
// request without a Content-Type is taken as JSON; any other type than
// application/json is refused. It returns the HTTP status for an error.
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, int, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, http.StatusBadRequest, errors.New("Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, errors.New("request body exceeds 1 MiB")
		}
		return nil, http.StatusBadRequest, errors.New("read request body: " + err.Error())
	}
	if len(body) == 0 {
		return nil, http.StatusBadRequest, errors.New("request body is empty; want a JSON object")
	}
	return body, 0, nil
}
