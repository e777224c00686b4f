package flow

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestStatusRecorder(t *testing.T) {
	for _, c := range []struct {
		name  string
		write func(w http.ResponseWriter)
		want  int
	}{
		{"nothing", func(http.ResponseWriter) {}, 0},
		{"body first", func(w http.ResponseWriter) { _, _ = w.Write([]byte("x")) }, 200},
		{"status", func(w http.ResponseWriter) { w.WriteHeader(503); w.WriteHeader(200) }, 503},
		{"early hints, then the answer", func(w http.ResponseWriter) { w.WriteHeader(103); w.WriteHeader(204) }, 204},
		{"early hints, then a body", func(w http.ResponseWriter) { w.WriteHeader(103); _, _ = w.Write([]byte("x")) }, 200},
		{"switching protocols", func(w http.ResponseWriter) { w.WriteHeader(101) }, 101},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &StatusRecorder{ResponseWriter: httptest.NewRecorder()}
			c.write(rec)
			if rec.Status != c.want {
				t.Fatalf("Status = %d, want %d", rec.Status, c.want)
			}
		})
	}
	under := httptest.NewRecorder()
	var w http.ResponseWriter = &StatusRecorder{ResponseWriter: under}
	w.(http.Flusher).Flush()
	if !under.Flushed {
		t.Fatal("Flush did not reach the wrapped writer")
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Fatalf("ResponseController through Unwrap: %v", err)
	}
}
