// Command evproxy is a research spike for issue 20, item 5: a minimal
// HTTP/1.1 keep-alive reverse proxy on event loops (gnet v2), no
// goroutine per connection, to measure whether an event-loop engine gets
// Go's CPU per proxied request near nginx's. It is not part of the
// product: it lives in a module of its own so that gnet stays out of
// FluxGate's go.mod.
//
//	cd test/gwbench/evproxy && go build -o /tmp/evproxy . && /tmp/evproxy 127.0.0.1:8081 127.0.0.1:8080
//
// -engine goroutines serves the same proxy on net.Conn, a goroutine a
// connection, as the control. `go run ./test/gwbench -evproxy` builds it
// and measures both against nginx.
//
// What it does: each client connection gets one upstream connection,
// dialled onto the client's own event loop, kept alive and used for one
// request at a time. Requests may carry a Content-Length body (streamed
// through); responses must have a Content-Length or no body (HEAD, 1xx,
// 204, 304). Hop-by-hop headers are dropped both ways. Chunked request
// bodies are refused with 501, responses without a length with 502.
// What it lacks, for the gateway: see BENCHMARKS.md (issue 20, item 5).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"strconv"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
)

// Bounds: a header block larger than maxHeader is refused; a peer whose
// unsent output passes maxOutbound (a slow reader: gnet cannot pause
// reading the other side) has both connections closed; so has a client
// that sends more than maxPending bytes ahead while the upstream is
// being dialled or a response is pending.
const (
	maxHeader   = 16 << 10
	maxOutbound = 4 << 20
	maxPending  = 1 << 20
)

func main() {
	log.SetFlags(0)
	engine := flag.String("engine", "gnet", "gnet (event loops) or goroutines (the same proxy on net.Conn, a goroutine a connection)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: evproxy [-engine gnet|goroutines] LISTEN TARGET [LOOPS]\n(host:port twice; LOOPS gnet event loops, default one a CPU)")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) < 2 || len(args) > 3 {
		flag.Usage()
		os.Exit(2)
	}
	loops := runtime.NumCPU()
	if len(args) == 3 {
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 1 || n > 256 {
			log.Fatalf("LOOPS %q: want a number of event loops from 1 to 256", args[2])
		}
		loops = n
	}
	switch *engine {
	case "gnet":
		p, err := newProxy(args[1])
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(p.run(args[0], loops))
	case "goroutines":
		ln, err := net.Listen("tcp", args[0])
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(serveGoroutines(ln, args[1]))
	default:
		log.Fatalf("-engine %q: want gnet or goroutines", *engine)
	}
}

// proxy is the gnet event handler: client connections carry a *session
// as context, upstream connections an *upstream.
type proxy struct {
	gnet.BuiltinEventEngine
	target *net.TCPAddr
	eng    gnet.Engine
	booted chan struct{}
}

func newProxy(target string) (*proxy, error) {
	addr, err := net.ResolveTCPAddr("tcp", target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	return &proxy{target: addr, booted: make(chan struct{})}, nil
}

// run serves on listen with loops event loops until stop.
func (p *proxy) run(listen string, loops int) error {
	return gnet.Run(p, "tcp://"+listen, gnet.WithMulticore(true), gnet.WithNumEventLoop(loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay), gnet.WithReuseAddr(true), gnet.WithLogLevel(logging.WarnLevel))
}

func (p *proxy) stop() error {
	<-p.booted
	return p.eng.Stop(context.Background())
}

func (p *proxy) OnBoot(eng gnet.Engine) gnet.Action {
	p.eng = eng
	close(p.booted)
	return gnet.None
}

// session is one client connection and its upstream connection, touched
// only on their (shared) event loop.
type session struct {
	p          *proxy
	client     gnet.Conn
	up         gnet.Conn // nil while dialling or after the upstream closed
	dialing    bool
	dialFailed bool // the last dial failed: the next request gets 502
	closed     bool // the client connection is gone

	// The exchange in flight.
	waiting     bool  // a request was sent; its response is not complete
	reqBody     int64 // request body bytes still to forward
	head        bool  // the request was HEAD: its response has no body
	closeAfter  bool  // the client asked to close (or speaks HTTP/1.0)
	respStarted bool  // the response's header was forwarded
	respBody    int64 // response body bytes still to forward
	upClose     bool  // the upstream will close after this response

	scratch []byte // rewritten header blocks
}

// upstream is an upstream connection's context.
type upstream struct{ s *session }

func (p *proxy) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch ctx := c.Context().(type) {
	case *upstream: // dialled by session.dial onto this loop
		s := ctx.s
		s.dialing = false
		if s.closed {
			return nil, gnet.Close
		}
		s.up = c
		if s.client.InboundBuffered() > 0 {
			if s.fromClient() == gnet.Close {
				_ = s.client.Close()
			}
		}
		return nil, gnet.None
	default:
		s := &session{p: p, client: c}
		c.SetContext(s)
		s.dial()
		return nil, gnet.None
	}
}

// dial connects a new upstream connection onto the client's event loop;
// OnOpen links it to the session.
func (s *session) dial() {
	s.dialing = true
	loop := s.client.EventLoop()
	res, err := loop.Register(gnet.NewContext(context.Background(), &upstream{s}), s.p.target)
	if err != nil {
		s.failDial()
		return
	}
	// The result arrives once the dial is done; only a failure matters
	// (a success already ran OnOpen on the loop). A failure is handled
	// on the loop as well.
	go func() {
		if r := <-res; r.Err != nil {
			_ = loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				s.failDial()
				return nil
			}))
		}
	}()
}

// failDial answers 502 to the request waiting for the upstream, or to
// the next one.
func (s *session) failDial() {
	s.dialing, s.dialFailed = false, true
	if !s.closed && s.client.InboundBuffered() > 0 && s.fromClient() == gnet.Close {
		_ = s.client.Close()
	}
}

func (p *proxy) OnClose(c gnet.Conn, _ error) gnet.Action {
	switch ctx := c.Context().(type) {
	case *upstream:
		s := ctx.s
		if s.up != c {
			return gnet.None
		}
		s.up = nil
		if s.closed || !s.waiting {
			return gnet.None // an idle upstream: the next request dials again
		}
		if !s.respStarted {
			_, _ = s.client.Write(errorResponse(502, "upstream closed"))
		}
		_ = s.client.Close() // a response cut short cannot be completed
	case *session:
		ctx.closed = true
		if ctx.up != nil {
			_ = ctx.up.Close()
			ctx.up = nil
		}
	}
	return gnet.None
}

func (p *proxy) OnTraffic(c gnet.Conn) gnet.Action {
	switch ctx := c.Context().(type) {
	case *upstream:
		return ctx.s.fromUpstream(c)
	case *session:
		return ctx.fromClient()
	}
	return gnet.Close
}

// fromClient forwards what the client sent: the rest of a request body,
// then the next request once the previous response is complete.
func (s *session) fromClient() gnet.Action {
	c := s.client
	for {
		if s.reqBody > 0 {
			if s.up == nil {
				return gnet.Close // the upstream went away mid-request
			}
			n := int(min(int64(c.InboundBuffered()), s.reqBody))
			if n == 0 {
				return gnet.None
			}
			buf, _ := c.Peek(n)
			_, _ = s.up.Write(buf)
			_, _ = c.Discard(n)
			s.reqBody -= int64(n)
			continue
		}
		avail := c.InboundBuffered()
		if avail == 0 {
			return gnet.None
		}
		if s.up == nil && s.dialFailed {
			_, _ = c.Write(errorResponse(502, "upstream unreachable"))
			return gnet.Close
		}
		if s.waiting || s.up == nil {
			if s.up == nil && !s.dialing {
				s.dial()
			}
			if avail > maxPending {
				return gnet.Close
			}
			return gnet.None // the request waits in the buffer
		}
		buf, _ := c.Peek(-1)
		end := headerEnd(buf)
		if end < 0 || end > maxHeader {
			if avail > maxHeader {
				_, _ = c.Write(errorResponse(431, "request header too large"))
				return gnet.Close
			}
			return gnet.None
		}
		req, err := parseRequest(buf[:end])
		if err != nil {
			_, _ = c.Write(errorResponse(err.status, err.msg))
			return gnet.Close
		}
		s.waiting, s.respStarted = true, false
		s.head, s.closeAfter = req.head, req.close
		body := int(min(int64(len(buf)-end), req.contentLength))
		s.forward(s.up, buf, end, body, req.hopByHop)
		_, _ = c.Discard(end + body)
		s.reqBody = req.contentLength - int64(body)
	}
}

// forward writes to dst, in one system call, the header block buf[:end]
// (without its hop-by-hop fields if it has some) and the body bytes
// that follow it in buf.
func (s *session) forward(dst gnet.Conn, buf []byte, end, body int, hopByHop bool) {
	if !hopByHop {
		_, _ = dst.Write(buf[:end+body])
		return
	}
	s.scratch = appendWithoutHopByHop(s.scratch[:0], buf[:end])
	if body == 0 {
		_, _ = dst.Write(s.scratch)
		return
	}
	_, _ = dst.Writev([][]byte{s.scratch, buf[end : end+body]})
}

// fromUpstream forwards a response to the client and, once it is
// complete, goes on with the client's next request.
func (s *session) fromUpstream(u gnet.Conn) gnet.Action {
	for {
		avail := u.InboundBuffered()
		if avail == 0 {
			return gnet.None
		}
		if !s.waiting {
			return gnet.Close // bytes nobody asked for
		}
		if !s.respStarted {
			buf, _ := u.Peek(-1)
			end := headerEnd(buf)
			if end < 0 || end > maxHeader {
				if avail > maxHeader {
					return s.badGateway("response header too large")
				}
				return gnet.None
			}
			resp, err := parseResponse(buf[:end], s.head)
			if err != nil {
				return s.badGateway(err.msg)
			}
			body := int(min(int64(len(buf)-end), resp.contentLength))
			s.forward(s.client, buf, end, body, resp.hopByHop)
			_, _ = u.Discard(end + body)
			if resp.interim {
				continue // 1xx: the final response follows
			}
			s.respStarted, s.respBody, s.upClose = true, resp.contentLength-int64(body), resp.close
		}
		if n := int(min(int64(u.InboundBuffered()), s.respBody)); n > 0 {
			buf, _ := u.Peek(n)
			_, _ = s.client.Write(buf)
			_, _ = u.Discard(n)
			s.respBody -= int64(n)
		}
		if s.client.OutboundBuffered() > maxOutbound {
			_ = s.client.Close()
			return gnet.Close
		}
		if s.respBody > 0 {
			return gnet.None
		}
		// The response is complete.
		s.waiting, s.respStarted = false, false
		if s.closeAfter {
			_ = s.client.Close()
			return gnet.Close
		}
		action := gnet.None
		if s.upClose {
			s.up, action = nil, gnet.Close
		}
		if s.client.InboundBuffered() > 0 && s.fromClient() == gnet.Close {
			_ = s.client.Close()
		}
		if action == gnet.Close {
			return action
		}
	}
}

// badGateway answers 502 to a request whose response cannot be
// forwarded and closes both connections.
func (s *session) badGateway(why string) gnet.Action {
	if !s.respStarted {
		_, _ = s.client.Write(errorResponse(502, why))
	}
	_ = s.client.Close()
	return gnet.Close
}

func errorResponse(status int, msg string) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n",
		status, statusText[status], len(msg)+1, msg)
}

var statusText = map[int]string{400: "Bad Request", 431: "Request Header Fields Too Large", 501: "Not Implemented", 502: "Bad Gateway"}
