package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// Every gRPC measurement is also made with a lean client: the Check call
// written as raw HTTP/2 frames, each request's bytes encoded before the
// loop starts. Closed loop (leanChecks), one goroutine keeps -callers
// calls in flight on one connection (h2load's shape, as wrk is HTTP's);
// open loop (leanClient), each caller writes its own call and one reader
// hands the answers back. grpc-go's client costs about 14 µs of CPU a
// call (its stream goroutines, its writer's hand-over, its codec) — more
// than the agent spends deciding a lazy check — and shares the machine's
// two cores with the server; its hand-overs add to every latency. It
// caps what a ratio between two servers can show. The lean client costs
// 1–3 µs a call, so its figures are the server's.
//
// It speaks as much HTTP/2 as a gRPC client needs and checks what it must
// to count a call as good: the server's SETTINGS (acknowledged, and its
// MAX_CONCURRENT_STREAMS kept), both flow-control windows in each
// direction, PING answered, a GOAWAY or connection error ends the loop,
// and a call is good when its stream ends with grpc-status 0 and one
// Check response that accepts. Anything else — RST_STREAM, another
// status, a rejection, a response it cannot read — is a failure.

// leanMode is a loadMode driven by leanChecks at a control point over
// keys distinct users.
type leanMode struct {
	cp   string
	keys int
}

// leanConn is one HTTP/2 connection of the lean client. It is used by one
// goroutine.
type leanConn struct {
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
	fr   *http2.Framer
	dec  *hpack.Decoder

	first, again []byte   // the request's header block: the first, then every later one (indexed)
	bodies       [][]byte // gRPC-framed requests, one per user
	nextBody     int
	nextID       uint32

	maxStreams uint32 // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	sendWin    int64  // the connection's send window
	streamWin  int64  // a new stream's send window (the server's SETTINGS_INITIAL_WINDOW_SIZE)
	unacked    int    // DATA bytes received and not yet given back

	streams map[uint32]*leanStream
	// status is the grpc-status of the header block being decoded; -1
	// until one is seen. endsStream: that block's HEADERS ended its
	// stream (its CONTINUATIONs cannot say so).
	status     int
	endsStream bool
}

// leanStream is a call in flight.
type leanStream struct {
	accepted bool // a Check response that accepts was read
	answers  int  // Check responses read
	partial  []byte
	done     chan int // leanClient's calls: given the call's grpc-status when it ends
}

// leanWindow is the receive window the client gives the server, for each
// stream and the connection.
const leanWindow = 1 << 30

// dialLean opens a lean connection to addr whose calls send reqs in turn,
// and reads the server's SETTINGS.
func dialLean(addr string, reqs []*pb.CheckRequest) (*leanConn, error) {
	var conn net.Conn
	var err error
	if srvTLS != nil {
		cfg := srvTLS.ClientConfig()
		cfg.NextProtos = []string{"h2"}
		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	} else {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
	}
	if err != nil {
		return nil, err
	}
	c := &leanConn{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), bw: bufio.NewWriterSize(conn, 64<<10),
		nextID: 1, maxStreams: 1 << 31, sendWin: 65535, streamWin: 65535, streams: map[uint32]*leanStream{}, status: -1}
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames()
	c.dec = hpack.NewDecoder(4096, c.field)
	if err := c.encode(addr, reqs); err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err := c.handshake(); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("lean client: %w", err)
	}
	return c, nil
}

// encode prepares every request's bytes: the header block as a stateful
// HPACK encoder sends it the first time and every time after (all of it
// then from its dynamic table), and each of reqs as a gRPC message.
func (c *leanConn) encode(authority string, reqs []*pb.CheckRequest) error {
	var buf []byte
	w := writerFunc(func(p []byte) (int, error) { buf = append(buf, p...); return len(p), nil })
	enc := hpack.NewEncoder(w)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: pb.FlowControlService_Check_FullMethodName}, {Name: ":authority", Value: authority},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}
	for i := range 2 {
		buf = nil
		for _, f := range fields {
			if err := enc.WriteField(f); err != nil {
				return err
			}
		}
		if i == 0 {
			c.first = buf
		} else {
			c.again = buf
		}
	}
	c.bodies = make([][]byte, len(reqs))
	for i := range c.bodies {
		msg, err := proto.Marshal(reqs[i])
		if err != nil {
			return err
		}
		b := make([]byte, 5, 5+len(msg))
		binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
		c.bodies[i] = append(b, msg...)
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// handshake sends the preface, SETTINGS and a connection WINDOW_UPDATE,
// and reads frames until the server's SETTINGS.
func (c *leanConn) handshake() error {
	_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.conn.SetDeadline(time.Time{}) }()
	if _, err := c.bw.WriteString(http2.ClientPreface); err != nil {
		return err
	}
	if err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: leanWindow},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
		return err
	}
	if err := c.fr.WriteWindowUpdate(0, leanWindow-65535); err != nil {
		return err
	}
	if err := c.bw.Flush(); err != nil {
		return err
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return err
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			return c.frame(f, nil)
		}
		if err := c.frame(f, nil); err != nil {
			return err
		}
	}
}

// leanChecks runs reqs in turn on a lean connection to p's gRPC port for
// -duration, -callers in flight, and returns calls, calls/s, failures and
// this process's CPU a call.
func leanChecks(p *proc, reqs []*pb.CheckRequest) (map[string]float64, error) {
	c, err := dialLean(p.grpcAddr, reqs)
	if err != nil {
		return nil, err
	}
	defer c.conn.Close()
	cpu0 := selfCPU()
	t0 := time.Now()
	calls, failures, err := c.run(*callers, *duration)
	elapsed := time.Since(t0)
	if err != nil {
		return nil, err
	}
	if calls == 0 {
		return nil, errors.New("lean client: no call answered")
	}
	return map[string]float64{"calls": float64(calls), "calls/s": float64(calls) / elapsed.Seconds(), "failures": float64(failures),
		"loadgen µs CPU/call": (selfCPU() - cpu0) / float64(calls) * 1e6}, nil
}

// run keeps depth calls in flight (fewer if the server allows fewer
// streams or its windows are short) for d, then lets those in flight
// finish (for at most 5 s), and returns the good and failed calls.
func (c *leanConn) run(depth int, d time.Duration) (good, failed int64, err error) {
	var stop atomic.Bool
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	_ = c.conn.SetDeadline(time.Now().Add(d + 5*time.Second))
	defer func() { _ = c.conn.SetDeadline(time.Time{}) }()
	done := func(s *leanStream, status int) {
		if status == 0 && s.accepted && s.answers == 1 {
			good++
			return
		}
		if failed == 0 {
			fmt.Fprintf(os.Stderr, "lean client: first failure: grpc-status %d (-1: none), %d answers, accepted %v\n", status, s.answers, s.accepted)
		}
		failed++
	}
	for {
		for !stop.Load() && len(c.streams) < depth && c.room() {
			if err := c.call(c.nextBody, &leanStream{}); err != nil {
				return good, failed, err
			}
		}
		if len(c.streams) == 0 {
			return good, failed, c.bw.Flush()
		}
		if c.br.Buffered() == 0 {
			if err := c.bw.Flush(); err != nil {
				return good, failed, err
			}
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			return good, failed, err
		}
		if err := c.frame(f, done); err != nil {
			return good, failed, err
		}
	}
}

// room reports whether the server allows another stream and the next
// request's body fits the send windows.
func (c *leanConn) room() bool {
	n := int64(len(c.bodies[c.nextBody]))
	return uint32(len(c.streams)) < c.maxStreams && c.sendWin >= n && c.streamWin >= n
}

// call writes one Check call of request i as s: HEADERS, then DATA
// ending the stream. The request after i is the next run's.
func (c *leanConn) call(i int, s *leanStream) error {
	id := c.nextID
	c.nextID += 2
	block := c.again
	if id == 1 {
		block = c.first
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
		return err
	}
	body := c.bodies[i]
	c.nextBody = (i + 1) % len(c.bodies)
	c.sendWin -= int64(len(body))
	c.streams[id] = s
	return c.fr.WriteData(id, true, body)
}

// frame handles one frame from the server; done is told of every call
// that ends, with its grpc-status (-1: it ended without one).
func (c *leanConn) frame(f http2.Frame, done func(*leanStream, int)) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		err := f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingMaxConcurrentStreams:
				c.maxStreams = s.Val
			case http2.SettingInitialWindowSize:
				c.streamWin = int64(s.Val)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return c.fr.WriteSettingsAck()
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		return c.fr.WritePing(true, f.Data)
	case *http2.WindowUpdateFrame:
		if f.StreamID == 0 {
			c.sendWin += int64(f.Increment)
		}
		return nil
	case *http2.GoAwayFrame:
		return fmt.Errorf("lean client: GOAWAY %v: %s", f.ErrCode, f.DebugData())
	case *http2.RSTStreamFrame:
		if s := c.streams[f.StreamID]; s != nil {
			delete(c.streams, f.StreamID)
			done(s, -1)
		}
		return nil
	case *http2.DataFrame:
		c.unacked += int(f.Length)
		if c.unacked >= leanWindow/2 {
			if err := c.fr.WriteWindowUpdate(0, uint32(c.unacked)); err != nil {
				return err
			}
			c.unacked = 0
		}
		s := c.streams[f.StreamID]
		if s == nil {
			return nil
		}
		s.partial = append(s.partial, f.Data()...)
		for len(s.partial) >= 5 {
			n := int(binary.BigEndian.Uint32(s.partial[1:5]))
			if len(s.partial) < 5+n {
				break
			}
			s.answers++
			s.accepted = s.partial[0] == 0 && accepts(s.partial[5:5+n])
			s.partial = s.partial[5+n:]
		}
		if f.StreamEnded() { // DATA ending a gRPC stream: no trailers, no status
			delete(c.streams, f.StreamID)
			done(s, -1)
		}
		return nil
	case *http2.HeadersFrame:
		c.endsStream = f.StreamEnded()
		return c.headers(f.StreamID, f.HeaderBlockFragment(), f.HeadersEnded(), done)
	case *http2.ContinuationFrame:
		return c.headers(f.StreamID, f.HeaderBlockFragment(), f.HeadersEnded(), done)
	}
	return nil
}

// headers decodes a header block fragment; a block that ends its stream
// (the trailers, or trailers only) ends the call.
func (c *leanConn) headers(id uint32, frag []byte, ended bool, done func(*leanStream, int)) error {
	if _, err := c.dec.Write(frag); err != nil {
		return fmt.Errorf("lean client: header block: %w", err)
	}
	if !ended {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return fmt.Errorf("lean client: header block: %w", err)
	}
	status := c.status
	c.status = -1
	s := c.streams[id]
	if s == nil || !c.endsStream {
		return nil
	}
	delete(c.streams, id)
	done(s, status)
	return nil
}

// field is the HPACK decoder's emit function: it keeps grpc-status.
func (c *leanConn) field(f hpack.HeaderField) {
	if f.Name == "grpc-status" {
		c.status, _ = strconv.Atoi(f.Value)
	}
}

// accepts reports whether msg, a CheckResponse, accepts: its
// decision_type (field 1) is DECISION_TYPE_ACCEPTED.
func accepts(msg []byte) bool {
	decision := uint64(0)
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return false
		}
		msg = msg[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return false
			}
			decision, msg = v, msg[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, msg)
		if m < 0 {
			return false
		}
		msg = msg[m:]
	}
	return decision == uint64(pb.DecisionType_DECISION_TYPE_ACCEPTED)
}

// leanModes are the lean client's modes on agent, their names after
// prefix ("" or "baseline "): exact, lazy_sync and the local limiter
// (redishttp.go's), 10,000 users each.
func leanModes(agent *proc, prefix string) []loadMode {
	var modes []loadMode
	for _, m := range []struct{ name, cp string }{{"exact", "exact"}, {"lazy_sync", "lazy"}, {"local limiter", "local"}} {
		modes = append(modes, loadMode{name: prefix + "gRPC (lean client) " + m.name + ", 10,000 keys", agent: agent, lean: &leanMode{m.cp, 10_000}})
	}
	return modes
}

// leanClient shares a lean connection between goroutines, for the open
// loop: each caller writes its own call (and flushes it), and one reader
// goroutine hands every answer back to its caller.
type leanClient struct {
	c    *leanConn
	mu   sync.Mutex // guards c's writes, streams and windows, and err
	room *sync.Cond // on mu: told when a stream ends or a window grows
	err  error      // the connection's end
}

// newLeanClient dials a lean connection (dialLean's arguments) and starts
// its reader.
func newLeanClient(addr string, reqs []*pb.CheckRequest) (*leanClient, error) {
	c, err := dialLean(addr, reqs)
	if err != nil {
		return nil, err
	}
	l := &leanClient{c: c}
	l.room = sync.NewCond(&l.mu)
	go l.read()
	return l, nil
}

// close ends the connection; its reader ends with it.
func (l *leanClient) close() { _ = l.c.conn.Close() }

// read reads the server's frames until the connection ends, and then
// fails every call in flight.
func (l *leanClient) read() {
	done := func(s *leanStream, status int) { s.done <- status }
	for {
		f, err := l.c.fr.ReadFrame()
		l.mu.Lock()
		if err == nil {
			if err = l.c.frame(f, done); err == nil && l.c.bw.Buffered() > 0 {
				err = l.c.bw.Flush()
			}
		}
		if err != nil {
			l.err = err
			for id, s := range l.c.streams {
				delete(l.c.streams, id)
				s.done <- -1
			}
		}
		l.room.Broadcast()
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// op is a Check call of request n (modulo their number), as an op: it fails
// unless the server accepted with status OK.
func (l *leanClient) op(ctx context.Context, _, n int) error {
	s := &leanStream{done: make(chan int, 1)}
	l.mu.Lock()
	for l.err == nil && !l.c.room() {
		l.room.Wait()
	}
	err := l.err
	var id uint32
	if err == nil {
		id = l.c.nextID
		if err = l.c.call(n%len(l.c.bodies), s); err == nil {
			err = l.c.bw.Flush()
		}
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case status := <-s.done:
		if status != 0 || s.answers != 1 || !s.accepted {
			return fmt.Errorf("lean client: grpc-status %d (-1: none), %d answers, accepted %v", status, s.answers, s.accepted)
		}
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		if l.c.streams[id] == s {
			delete(l.c.streams, id)
			_ = l.c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			_ = l.c.bw.Flush()
			l.room.Broadcast()
		}
		l.mu.Unlock()
		return ctx.Err()
	}
}
