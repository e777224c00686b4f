package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// The net/http engine copies response bodies through pooled buffers:
// ReverseProxy without a BufferPool makes a 32 KiB buffer a request. The
// bytes allocated a proxied request (client, server, gateway and target
// all in this process) stay well under that.
func TestNetEngineReusesCopyBuffers(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	defer up.Close()
	g := proxyTo(t, up, Options{})
	front := httptest.NewServer(g)
	defer front.Close()
	_, per := allocsPerGet(t, front.Client(), front.URL+"/")
	t.Logf("%d bytes allocated a proxied request", per)
	if per > 24<<10 {
		t.Errorf("%d bytes allocated a proxied request, want well under the 32 KiB buffer ReverseProxy makes without a pool", per)
	}
}

// allocsPerGet is what a GET of url with c allocates (objects and bytes,
// in the whole process), averaged over 300 once connections, pools and
// caches are warm.
func allocsPerGet(t *testing.T, c *http.Client, url string) (objects, bytes uint64) {
	t.Helper()
	get := func() {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 50 {
		get()
	}
	const n = 300
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		get()
	}
	runtime.ReadMemStats(&after)
	return (after.Mallocs - before.Mallocs) / n, (after.TotalAlloc - before.TotalAlloc) / n
}

func TestBufferPoolKeepsOnlyItsSize(t *testing.T) {
	var bp bufferPool
	b := bp.Get()
	if len(b) != copyBufferSize {
		t.Fatalf("Get: %d bytes, want %d", len(b), copyBufferSize)
	}
	bp.Put(make([]byte, 100)) // not kept: Get never hands out a short buffer
	for range 10 {
		if got := bp.Get(); len(got) != copyBufferSize {
			t.Fatalf("Get after a short Put: %d bytes", len(got))
		}
	}
}
