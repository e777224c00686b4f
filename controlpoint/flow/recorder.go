package flow

import "net/http"

// StatusRecorder is an http.ResponseWriter that learns the status of the
// answer written through it, for flow ends, flux meters and metrics: the
// first final status (200 when the handler writes a body first), or 101
// when the connection switches protocols. Informational answers (103
// Early Hints) go on to the client and are not the status. Status is 0
// until the handler wrote anything.
//
// It lets http.ResponseController reach the writer it wraps (Unwrap) and
// flushes through it for handlers that assert http.Flusher.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
}

// WriteHeader passes code on and remembers it as described above.
func (r *StatusRecorder) WriteHeader(code int) {
	if r.Status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		r.Status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *StatusRecorder) Write(b []byte) (int, error) {
	if r.Status == 0 {
		r.Status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush and hijack (WebSocket).
func (r *StatusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush supports streaming through writers that only assert http.Flusher.
func (r *StatusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
