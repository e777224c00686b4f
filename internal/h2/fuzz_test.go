package h2

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// seedFrames are frame sequences a client sends after its preface.
func seedFrames(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, hf := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "https"}, {Name: ":authority", Value: "x"}, {Name: ":path", Value: "/p?q=1"}, {Name: "content-length", Value: "3"}, {Name: "trailer", Value: "x-t"}} {
		_ = enc.WriteField(hf)
	}
	block := append([]byte(nil), hb.Bytes()...)
	hb.Reset()
	_ = enc.WriteField(hpack.HeaderField{Name: "x-t", Value: "v"})
	trailer := append([]byte(nil), hb.Bytes()...)
	seqs := []func(fr *http2.Framer){
		func(fr *http2.Framer) {
			_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
			_ = fr.WriteData(1, false, []byte("abc"))
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: trailer, EndHeaders: true, EndStream: true})
			_ = fr.WriteWindowUpdate(0, 1000)
			_ = fr.WriteWindowUpdate(1, 1000)
		},
		func(fr *http2.Framer) {
			_ = fr.WriteSettings()
			_ = fr.WritePing(false, [8]byte{1})
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:3]})
			_ = fr.WriteContinuation(3, true, block[3:])
			_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
			_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		},
		func(fr *http2.Framer) {
			_ = fr.WriteSettings()
			_ = fr.WritePriority(5, http2.PriorityParam{StreamDep: 5})
			_ = fr.WriteDataPadded(7, true, []byte("x"), []byte{0, 0})
			_ = fr.WriteRawFrame(0x20, 0, 0, []byte("unknown"))
		},
	}
	for _, seq := range seqs {
		var b bytes.Buffer
		seq(http2.NewFramer(&b, nil))
		f.Add(b.Bytes())
	}
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff})
}

// FuzzServeConn feeds arbitrary bytes after the client preface: the
// server must not panic, the connection must end once the client closes,
// and no goroutine may be left (goleak in TestMain).
func FuzzServeConn(f *testing.F) {
	seedFrames(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				w.Header().Set("Trailer", "X-T")
				_, _ = w.Write(b)
				w.Header().Set("X-T", "v")
			}),
			ReadTimeout: time.Second, WriteTimeout: time.Second,
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			_ = s.ServeConn(server)
			close(done)
		}()
		drained := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, client); close(drained) }()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(client, http2.ClientPreface)
		_, _ = client.Write(in)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return after the client closed")
		}
		<-drained
	})
}
