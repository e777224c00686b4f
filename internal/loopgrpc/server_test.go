//go:build linux

package loopgrpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/fluxgate/fluxgate/internal/conncap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testService is grpc-go's side: every method of TestService, UnaryCall
// answering "grpc-go" (the loops answer it "loop").
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("fail")) > 0 {
		return nil, status.Error(codes.PermissionDenied, md.Get("fail")[0])
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t1"))
	return &testpb.Empty{}, nil
}

func (testService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Username: "grpc-go", Payload: in.GetPayload()}, nil
}

func (testService) StreamingInputCall(s grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	n := 0
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return s.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(n)})
		}
		if err != nil {
			return err
		}
		n += len(m.GetPayload().GetBody())
	}
}

func (testService) StreamingOutputCall(in *testpb.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range in.GetResponseParameters() {
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: bytes.Repeat([]byte{'x'}, int(p.GetSize()))}}); err != nil {
			return err
		}
	}
	return nil
}

func (testService) FullDuplexCall(s grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	for {
		m, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: m.GetPayload()}); err != nil {
			return err
		}
	}
}

const unaryMethod = "/grpc.testing.TestService/UnaryCall"

// loopUnary is UnaryCall on the loops: the payload back, username "loop"
// (or the response_size's status code as an error, and a payload type
// of 1 waits on a goroutine for the client's deadline or reset).
type loopUnary struct {
	waited   atomic.Int64 // Runs on a goroutine that ended with their ctx
	onLoop   atomic.Int64
	running  chan struct{} // told when a waiting Run starts, if set
	tokenful bool          // refuse calls without authorization: Bearer t
}

func (lu *loopUnary) unary(c *Call) (Answer, error) {
	if lu.tokenful && c.Field("authorization") != "Bearer t" {
		return Answer{}, status.Error(codes.Unauthenticated, "missing token")
	}
	in := &testpb.SimpleRequest{}
	if err := proto.Unmarshal(c.Msg, in); err != nil {
		return Answer{}, status.Error(codes.InvalidArgument, err.Error())
	}
	if string(in.GetPayload().GetBody()) == "panic" {
		panic("a method's bug")
	}
	if code := in.GetResponseSize(); code != 0 {
		return Answer{}, status.Error(codes.Code(code), "refusé: ½")
	}
	if in.GetResponseType() == 1 {
		return Answer{Waits: true, Run: func(ctx context.Context, out []byte) ([]byte, error) {
			if lu.running != nil {
				lu.running <- struct{}{}
			}
			<-ctx.Done()
			lu.waited.Add(1)
			return nil, status.FromContextError(ctx.Err()).Err()
		}}, nil
	}
	return Answer{Run: func(_ context.Context, out []byte) ([]byte, error) {
		lu.onLoop.Add(1)
		return proto.MarshalOptions{}.MarshalAppend(out, &testpb.SimpleResponse{Username: "loop", Payload: in.GetPayload()})
	}}, nil
}

type fixture struct {
	s     *Server
	lu    *loopUnary
	addr  string
	done  chan error
	creds credentials.TransportCredentials // the clients'
	tls   *tls.Config                      // the clients' TLS; nil: h2c
	// fallbackTLS counts the calls Fallback served that carried the
	// connection's TLS state (r.TLS, h2 negotiated), fallbackPlain those
	// without.
	fallbackTLS, fallbackPlain atomic.Int64
}

// start serves lu on a Server on a loopback port, h2c, grpc-go's test
// service behind it as Fallback (unless tune sets another).
func start(t *testing.T, lu *loopUnary, tune func(*Options)) *fixture {
	return startOn(t, false, lu, tune)
}

// servings are the two ways a Server serves: plain (h2c, Serve) and over
// TLS (ServeTLS), for the tests that run in both.
var servings = []struct {
	name  string
	start func(*testing.T, *loopUnary, func(*Options)) *fixture
}{{"h2c", start}, {"tls", startTLS}}

func startOn(t *testing.T, overTLS bool, lu *loopUnary, tune func(*Options)) *fixture {
	t.Helper()
	gs := grpc.NewServer()
	testpb.RegisterTestServiceServer(gs, testService{})
	f := &fixture{lu: lu, done: make(chan error, 1), creds: insecure.NewCredentials()}
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.TLS.NegotiatedProtocol == "h2" {
			f.fallbackTLS.Add(1)
		} else {
			f.fallbackPlain.Add(1)
		}
		gs.ServeHTTP(w, r)
	})
	o := Options{Unary: map[string]Unary{unaryMethod: lu.unary}, Fallback: fallback, Loops: 2}
	if tune != nil {
		tune(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f.s, f.addr = s, ln.Addr().String()
	if overTLS {
		tln := f.serveTLS(t, ln, o.Cap)
		go func() { f.done <- s.ServeTLS(tln) }()
	} else {
		go func() { f.done <- s.Serve(ln) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-f.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = ln.Close()
		gs.Stop()
	})
	return f
}

func (f *fixture) client(t *testing.T) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(f.creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// dial opens a raw connection to the Server, over TLS with h2 agreed by
// ALPN when it serves TLS, its socket's receive buffer rcvBuf bytes
// (0: the system's).
func (f *fixture) dial(t *testing.T, rcvBuf int) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	if rcvBuf > 0 {
		_ = nc.(*net.TCPConn).SetReadBuffer(rcvBuf)
	}
	if f.tls == nil {
		return nc
	}
	cfg := f.tls.Clone()
	cfg.NextProtos = []string{"h2"}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctxT(t)); err != nil {
		_ = nc.Close()
		t.Fatal(err)
	}
	return tc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUnaryOnTheLoop(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			f := sv.start(t, &loopUnary{}, nil)
			c := f.client(t)
			ctx := ctxT(t)
			for i := range 50 {
				body := bytes.Repeat([]byte{byte(i)}, i*97)
				resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: body}})
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetUsername() != "loop" || !bytes.Equal(resp.GetPayload().GetBody(), body) {
					t.Fatalf("call %d: answered by %q with %d bytes, want the loop's with %d", i, resp.GetUsername(), len(resp.GetPayload().GetBody()), len(body))
				}
			}
			if n := f.lu.onLoop.Load(); n != 50 {
				t.Errorf("%d calls answered on the loop, want 50", n)
			}
		})
	}
}

func TestUnaryStatus(t *testing.T) {
	f := start(t, &loopUnary{}, nil)
	c := f.client(t)
	_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{ResponseSize: int32(codes.FailedPrecondition)})
	if s := status.Convert(err); s.Code() != codes.FailedPrecondition || s.Message() != "refusé: ½" {
		t.Fatalf("got %v, want FailedPrecondition with the message as sent", err)
	}
	// A malformed message: the Unary's error.
	cc := f.rawCall(t, unaryMethod, []byte{0xff, 0xff})
	if cc.Code() != codes.InvalidArgument {
		t.Fatalf("malformed message: %v, want InvalidArgument", cc)
	}
}

func TestUnaryTooLarge(t *testing.T) {
	f := start(t, &loopUnary{}, func(o *Options) { o.MaxRecvMsgSize = 1000 })
	c := f.client(t)
	_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 5000)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("got %v, want ResourceExhausted", err)
	}
	// The connection serves on.
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestUnaryWaits(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			lu := &loopUnary{running: make(chan struct{}, 1)}
			f := sv.start(t, lu, nil)
			c := f.client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseType: 1})
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("got %v, want DeadlineExceeded", err)
			}
			<-lu.running
			// A reset (the client cancels) ends the Run's context.
			ctx2, cancel2 := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := c.UnaryCall(ctx2, &testpb.SimpleRequest{ResponseType: 1})
				errc <- err
			}()
			<-lu.running
			cancel2()
			if err := <-errc; status.Code(err) != codes.Canceled {
				t.Fatalf("got %v, want Canceled", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for lu.waited.Load() < 2 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := lu.waited.Load(); n != 2 {
				t.Fatalf("%d waiting Runs saw their context end, want 2", n)
			}
			// And the connection serves on.
			if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFallbackCalls(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			f := sv.start(t, &loopUnary{}, nil)
			c := f.client(t)
			ctx := ctxT(t)

			var trailer metadata.MD
			if _, err := c.EmptyCall(ctx, &testpb.Empty{}, grpc.Trailer(&trailer)); err != nil {
				t.Fatal(err)
			}
			if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "t1" {
				t.Errorf("trailer x-trailer = %q, want t1", got)
			}
			_, err := c.EmptyCall(metadata.AppendToOutgoingContext(ctx, "fail", "nope 100%"), &testpb.Empty{})
			if s := status.Convert(err); s.Code() != codes.PermissionDenied || s.Message() != "nope 100%" {
				t.Errorf("got %v, want PermissionDenied from grpc-go", err)
			}

			// Client streaming past the windows: 4 MiB in 64 KiB messages.
			in, err := c.StreamingInputCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for range 64 {
				if err := in.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 64<<10)}}); err != nil {
					t.Fatal(err)
				}
			}
			got, err := in.CloseAndRecv()
			if err != nil || got.GetAggregatedPayloadSize() != 64*64<<10 {
				t.Fatalf("client streaming: %v, %v", got, err)
			}

			// Server streaming past the windows: 3 MiB.
			var params []*testpb.ResponseParameters
			for range 48 {
				params = append(params, &testpb.ResponseParameters{Size: 64 << 10})
			}
			out, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				m, err := out.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				n += len(m.GetPayload().GetBody())
			}
			if n != 48*64<<10 {
				t.Fatalf("server streaming: %d bytes, want %d", n, 48*64<<10)
			}

			// Bidirectional, message by message.
			bidi, err := c.FullDuplexCall(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				body := []byte(fmt.Sprint(i))
				if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
					t.Fatal(err)
				}
				m, err := bidi.Recv()
				if err != nil || !bytes.Equal(m.GetPayload().GetBody(), body) {
					t.Fatalf("bidi %d: %v, %v", i, m, err)
				}
			}
			if err := bidi.CloseSend(); err != nil {
				t.Fatal(err)
			}
			if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
				t.Fatalf("bidi end: %v, want EOF", err)
			}
			// Fallback saw each call's connection as it is: its TLS
			// state over TLS, none on h2c.
			tlsCalls, plain := f.fallbackTLS.Load(), f.fallbackPlain.Load()
			if (f.tls != nil) != (tlsCalls > 0) || (f.tls != nil) == (plain > 0) {
				t.Errorf("Fallback's calls: %d with the TLS state, %d without", tlsCalls, plain)
			}
		})
	}
}

// A compressed call of a loop method goes to grpc-go, which reads it.
func TestCompressedGoesToFallback(t *testing.T) {
	f := start(t, &loopUnary{}, nil)
	c := f.client(t)
	resp, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("zz")}}, grpc.UseCompressor(gzip.Name))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetUsername() != "grpc-go" {
		t.Fatalf("answered by %q, want grpc-go", resp.GetUsername())
	}
}

func TestMixedConcurrent(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			f := sv.start(t, &loopUnary{tokenful: true}, nil)
			c := f.client(t)
			ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer t")
			var wg sync.WaitGroup
			errc := make(chan error, 40)
			for g := range 20 {
				wg.Go(func() {
					for i := range 30 {
						var err error
						switch (g + i) % 3 {
						case 0:
							var r *testpb.SimpleResponse
							r, err = c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, i*1000)}})
							if err == nil && r.GetUsername() != "loop" {
								err = fmt.Errorf("answered by %q", r.GetUsername())
							}
						case 1:
							_, err = c.EmptyCall(ctx, &testpb.Empty{})
						case 2:
							var s grpc.BidiStreamingClient[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]
							if s, err = c.FullDuplexCall(ctx); err == nil {
								err = s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 20000)}})
								if err == nil {
									_, err = s.Recv()
								}
								if err == nil {
									err = s.CloseSend()
								}
								if err == nil {
									if _, err = s.Recv(); errors.Is(err, io.EOF) {
										err = nil
									}
								}
							}
						}
						if err != nil {
							errc <- fmt.Errorf("goroutine %d call %d: %w", g, i, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Error(err)
			}
			_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{})
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("without the token: %v, want Unauthenticated", err)
			}
		})
	}
}

func TestIdleConnectionGoesAway(t *testing.T) {
	f := start(t, &loopUnary{}, func(o *Options) { o.IdleTimeout = 100 * time.Millisecond })
	// A client that opens and then asks nothing gets GOAWAY (NO_ERROR),
	// and the connection ends.
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	fr := http2.NewFramer(nc, nc)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		fm, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the connection ended without GOAWAY: %v", err)
		}
		if ga, ok := fm.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeNo {
				t.Errorf("GOAWAY %v, want NO_ERROR", ga.ErrCode)
			}
			break
		}
	}
	if _, err := fr.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Errorf("after GOAWAY: %v, want the end", err)
	}
	// A gRPC client dials again after it and is served.
	c := f.client(t)
	for range 3 {
		if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestShutdownFinishesCalls(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			lu := &loopUnary{running: make(chan struct{}, 1)}
			f := sv.start(t, lu, nil)
			c := f.client(t)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseType: 1})
				errc <- err
			}()
			<-lu.running
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			if err := f.s.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("the call in flight got %v, want its own DeadlineExceeded", err)
			}
		})
	}
}

// rawCodec sends and reads messages as the bytes given.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rawCall calls method with msg as the request message, as it is.
func (f *fixture) rawCall(t *testing.T, method string, msg []byte) *status.Status {
	t.Helper()
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(f.creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var out []byte
	err = cc.Invoke(ctxT(t), method, &msg, &out, grpc.ForceCodec(rawCodec{}))
	return status.Convert(err)
}

// A method that panics fails its call with INTERNAL; the connection and
// the loop serve on.
func TestUnaryPanics(t *testing.T) {
	f := start(t, &loopUnary{}, nil)
	c := f.client(t)
	_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("panic")}})
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
}

// A client that sends no preface is closed after PrefaceTimeout, having
// had the server's SETTINGS.
func TestPrefaceTimeout(t *testing.T) {
	f := start(t, &loopUnary{}, func(o *Options) { o.PrefaceTimeout = 100 * time.Millisecond })
	// Before the dial: the server's clock starts at its accept, after
	// this (a lower bound, which a loaded machine cannot break).
	start := time.Now()
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	fr := http2.NewFramer(nil, bytes.NewReader(got))
	if fm, err := fr.ReadFrame(); err != nil || fm.Header().Type != http2.FrameSettings {
		t.Fatalf("first frame: %v, %v; want SETTINGS", fm, err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("closed after %v, before the preface timeout", d)
	}
}

// A connection past MaxConnectionAge gets GOAWAY: the call in flight
// finishes within the grace, the client moves to a new connection.
func TestMaxConnectionAge(t *testing.T) {
	lu := &loopUnary{running: make(chan struct{}, 1)}
	f := start(t, lu, func(o *Options) {
		o.MaxConnectionAge, o.MaxConnectionAgeGrace = 200*time.Millisecond, 200*time.Millisecond
	})
	c := f.client(t)
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	// A call that outlives the grace is cut with the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseType: 1})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a call past the grace: %v, want Unavailable", err)
	}
	<-lu.running
	for range 3 {
		if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// A client that sends calls and reads no answers is cut off after
// WriteTimeout, once the loop stopped reading it; the others are served.
func TestClientNotReadingIsCut(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			f := sv.start(t, &loopUnary{}, func(o *Options) { o.WriteTimeout = 300 * time.Millisecond })
			nc := f.dial(t, 4<<10)
			defer nc.Close()
			msg, _ := proto.Marshal(&testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 15000)}})
			body := append([]byte{0, 0, 0, 0, 0}, msg...)
			body[1], body[2], body[3], body[4] = byte(len(msg)>>24), byte(len(msg)>>16), byte(len(msg)>>8), byte(len(msg))
			var hb bytes.Buffer
			enc := hpack.NewEncoder(&hb)
			for _, hf := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: unaryMethod}, {Name: ":authority", Value: "x"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"}} {
				_ = enc.WriteField(hf)
			}
			errc := make(chan error, 1)
			go func() {
				fr := http2.NewFramer(nc, nil)
				_, err := io.WriteString(nc, http2.ClientPreface)
				if err == nil {
					err = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
				}
				if err == nil {
					err = fr.WriteWindowUpdate(0, 1<<31-1-65535)
				}
				for id := uint32(1); err == nil && id < 2*4000; id += 2 { // 60 MB of answers at most
					if err = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err == nil {
						err = fr.WriteData(id, true, body)
					}
				}
				errc <- err
			}()
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("the server took 4,000 calls whose answers were not read")
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the client's writes still block after 20 s: the connection was not cut")
			}
			c := f.client(t)
			if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Connections hold slots of the Cap while open; a full Cap closes an idle
// one (no call open) for a newcomer, and every slot comes back.
func TestCapSlots(t *testing.T) {
	for _, sv := range servings {
		t.Run(sv.name, func(t *testing.T) {
			k := conncap.New(conncap.Options{Max: 2, Evict: true})
			f := sv.start(t, &loopUnary{}, func(o *Options) { o.Cap = k })
			var ccs []*grpc.ClientConn
			for range 2 {
				cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(f.creds))
				if err != nil {
					t.Fatal(err)
				}
				ccs = append(ccs, cc)
				if _, err := testpb.NewTestServiceClient(cc).UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			if n := k.Open(); n != 2 {
				t.Errorf("open slots with 2 connections: %d", n)
			}
			time.Sleep(conncap.Grace + 50*time.Millisecond)
			c := f.client(t)
			if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
				t.Fatalf("the newcomer: %v", err)
			}
			for _, cc := range ccs {
				_ = cc.Close()
			}
		})
	}
}

// Requests arriving in pieces hold at most maxPartial bytes of a
// connection's memory: a call whose pieces would pass it fails with
// RESOURCE_EXHAUSTED, one below it, in pieces too, is answered, and the
// connection serves on.
func TestPartialBound(t *testing.T) {
	m := maxPartial
	t.Cleanup(func() { maxPartial = m }) // after the server's own cleanup: it stops the loops
	maxPartial = 64 << 10                // before they start
	f := start(t, &loopUnary{}, nil)
	c := f.client(t)
	_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 200<<10)}})
	if s := status.Convert(err); s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), "arriving at once") {
		t.Fatalf("a 200 KiB call past a 64 KiB bound: %v, want ResourceExhausted", err)
	}
	for _, size := range []int{40 << 10, 10} { // three frames; one
		r, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, size)}})
		if err != nil || len(r.GetPayload().GetBody()) != size {
			t.Fatalf("a call of %d bytes under the bound: %v", size, err)
		}
	}
}

// What a call answered on the loop allocates: the call's state and what
// the method does (nothing here). A gate for regressions, not a speed
// measurement.
func TestLoopCallAllocations(t *testing.T) {
	resp, _ := proto.Marshal(&testpb.SimpleResponse{Username: "loop"})
	answer := Answer{Run: func(_ context.Context, out []byte) ([]byte, error) { return append(out, resp...), nil }}
	f := start(t, &loopUnary{}, func(o *Options) {
		o.Unary[unaryMethod] = func(*Call) (Answer, error) { return answer, nil }
	})
	nc, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(time.Minute))
	// The first call's fields go as literals the server's table keeps,
	// the others' as references to them, as a gRPC client sends them.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	encode := func() []byte {
		hb.Reset()
		for _, hf := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: unaryMethod}, {Name: ":authority", Value: "agent"}, {Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"}, {Name: "grpc-timeout", Value: "999m"}, {Name: "user-agent", Value: "grpc-go/1.85.0"}} {
			_ = enc.WriteField(hf)
		}
		return slices.Clone(hb.Bytes())
	}
	block := encode()
	var out bytes.Buffer
	fr := http2.NewFramer(&out, nil)
	_, _ = out.WriteString(http2.ClientPreface)
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	_ = fr.WriteWindowUpdate(0, 1<<31-1-65535)
	if _, err := nc.Write(out.Bytes()); err != nil {
		t.Fatal(err)
	}
	msg := []byte{0, 0, 0, 0, 3, 0x10, 0x01, 0x18} // a SimpleRequest; the method does not read it
	buf := make([]byte, 64<<10)
	have := 0
	id := uint32(1)
	one := func() {
		out.Reset()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
		_ = fr.WriteData(id, true, msg)
		if _, err := nc.Write(out.Bytes()); err != nil {
			t.Fatal(err)
		}
		// Frames until this stream's END_STREAM (the trailers).
		for {
			for have >= 9 {
				n := 9 + (int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2]))
				if have < n {
					break
				}
				typ, flags, sid := buf[3], buf[4], uint32(buf[5]&0x7f)<<24|uint32(buf[6])<<16|uint32(buf[7])<<8|uint32(buf[8])
				copy(buf, buf[n:have])
				have -= n
				if sid == id && typ == byte(http2.FrameHeaders) && flags&byte(http2.FlagHeadersEndStream) != 0 {
					id += 2
					return
				}
				if sid == id && typ == byte(http2.FrameRSTStream) {
					t.Fatalf("stream %d reset", id)
				}
			}
			n, err := nc.Read(buf[have:])
			if err != nil {
				t.Fatal(err)
			}
			have += n
		}
	}
	one()
	block = encode() // references only from now on
	for range 200 {
		one()
	}
	allocs := testing.AllocsPerRun(2000, one)
	t.Logf("%.1f allocations a call", allocs)
	if allocs > 9 {
		t.Errorf("%.1f allocations a call answered on the loop, want at most 9", allocs)
	}
}
