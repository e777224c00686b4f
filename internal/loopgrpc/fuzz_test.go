//go:build linux

package loopgrpc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// panicLog records the log lines that tell of a recovered panic.
type panicLog struct {
	mu    sync.Mutex
	lines []string
}

func (p *panicLog) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicLog) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *panicLog) WithGroup(string) slog.Handler            { return p }
func (p *panicLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.lines = append(p.lines, r.Message)
		p.mu.Unlock()
	}
	return nil
}

// fuzzFrames are seeds: a unary call on the loop, one in pieces and
// reset, a call handed to Fallback with a body and trailers, control
// frames.
func fuzzFrames(f *testing.F) {
	block := func(path string) []byte {
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		for _, hf := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: path}, {Name: ":authority", Value: "agent"}, {Name: "content-type", Value: "application/grpc"}, {Name: "grpc-timeout", Value: "5S"}} {
			_ = enc.WriteField(hf)
		}
		return hb.Bytes()
	}
	msg := []byte{0, 0, 0, 0, 2, 0x10, 0x01}
	frames := func(write func(fr *http2.Framer)) []byte {
		var b bytes.Buffer
		write(http2.NewFramer(&b, nil))
		return b.Bytes()
	}
	f.Add(frames(func(fr *http2.Framer) {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(unaryMethod), EndHeaders: true})
		_ = fr.WriteData(1, true, msg)
	}))
	f.Add(frames(func(fr *http2.Framer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(unaryMethod), EndHeaders: true})
		_ = fr.WriteData(1, false, msg[:3])
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block(unaryMethod), EndHeaders: true, EndStream: true})
		_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
		_ = fr.WritePing(false, [8]byte{1})
	}))
	f.Add(frames(func(fr *http2.Framer) {
		_ = fr.WriteSettings()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block("/other.Service/Stream"), EndHeaders: true})
		_ = fr.WriteData(1, false, bytes.Repeat([]byte{7}, 1000))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(unaryMethod)[:4], EndHeaders: true, EndStream: true})
		_ = fr.WriteWindowUpdate(0, 1000)
		_ = fr.WriteGoAway(1, http2.ErrCodeNo, nil)
	}))
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
}

// FuzzConn sends the client preface and then anything; whatever comes,
// the loop recovers no panic and closes the connection once the client
// has sent its last byte and closed its side.
func FuzzConn(f *testing.F) {
	fuzzFrames(f)
	logs := &panicLog{}
	s, err := New(Options{
		Unary: map[string]Unary{unaryMethod: func(c *Call) (Answer, error) {
			return Answer{Waits: len(c.Msg) == 2, Run: func(_ context.Context, out []byte) ([]byte, error) { return append(out, c.Method[:4]...), nil }}, nil
		}},
		Fallback: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Trailer", "X-T")
			_, _ = w.Write(b)
			w.Header().Set("X-T", "v")
		}),
		Logger: slog.New(logs), Loops: 2, WriteTimeout: 2 * time.Second,
	})
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-served
		_ = ln.Close()
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		nc, err := net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		drained := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, nc); drained <- err }()
		_, _ = io.WriteString(nc, http2.ClientPreface)
		_, _ = nc.Write(in)
		_ = nc.CloseWrite()
		// The end: a FIN, or a reset when the server closed with bytes
		// of the client's unread; not the deadline.
		if err := <-drained; err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the connection did not end after the client's last byte: %v", err)
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		if len(logs.lines) > 0 {
			t.Fatalf("panics recovered: %q", logs.lines)
		}
	})
}
