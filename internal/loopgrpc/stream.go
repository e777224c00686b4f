//go:build linux

package loopgrpc

import (
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fluxgate/fluxgate/internal/h2"
)

// The Session's handler (h2.SessionHandler): a call of a Unary method
// with a message the loop can read is a unaryCall, any other a bridge to
// Fallback.

// Request opens a call.
func (c *conn) Request(st *h2.SessionStream, req *h2.SessionRequest) {
	if u := c.st.s.o.Unary[req.Path]; u != nil && req.Method == "POST" && loopReads(req.Fields) {
		uc := &unaryCall{c: c, st: st, u: u, method: req.Path}
		uc.fields = append(uc.few[:0], req.Fields...) // a call's own: req's go with the next HEADERS
		uc.a = answer{c: c, st: st}
		st.Value = uc
		if req.End {
			uc.run(nil)
		}
		return
	}
	c.bridge(st, req)
}

// Data is a piece of a call's request.
func (c *conn) Data(st *h2.SessionStream, p []byte, end bool) {
	switch v := st.Value.(type) {
	case *unaryCall:
		v.data(p, end)
	case *bridge:
		v.data(p, end)
	}
}

// Reset: the call ended before its answer did.
func (c *conn) Reset(st *h2.SessionStream) {
	switch v := st.Value.(type) {
	case *unaryCall:
		v.reset()
	case *bridge:
		v.reset()
	}
}

// Writable: the client's windows grew; the answers waiting go on.
func (c *conn) Writable() {
	if len(c.blocked) == 0 {
		return
	}
	blocked := make([]*answer, 0, len(c.blocked))
	for a := range c.blocked {
		blocked = append(blocked, a)
	}
	clear(c.blocked)
	for _, a := range blocked {
		a.push() // back in c.blocked if the windows are still short
	}
}

// loopReads reports whether the loop reads a call with these fields: a
// gRPC protobuf message, not compressed.
func loopReads(fields []hpack.HeaderField) bool {
	typed := false
	for _, f := range fields {
		switch f.Name {
		case "content-type":
			if f.Value != "application/grpc" && f.Value != "application/grpc+proto" {
				return false
			}
			typed = true
		case "grpc-encoding":
			if f.Value != "identity" {
				return false
			}
		}
	}
	return typed
}

// answer is a call's answer as the loop sends it: DATA waiting for the
// client's windows, then the trailers, which end the stream.
type answer struct {
	c        *conn
	st       *h2.SessionStream
	data     []byte // the connection's own memory
	trailers []hpack.HeaderField
	ending   bool // the trailers follow data
	done     bool // the stream is closed
	drained  func()
}

// send queues p (which may be the loop's memory) after what waits, and
// trailers to end the stream when end is set, within the windows.
func (a *answer) send(p []byte, trailers []hpack.HeaderField, end bool) {
	if a.done {
		return
	}
	if len(a.data) == 0 && len(p) > 0 {
		n := a.c.ss.WriteData(a.st, p, false)
		p = p[n:]
	}
	a.data = append(a.data, p...)
	if end {
		a.trailers, a.ending = trailers, true
	}
	a.push()
	if a.ending && !a.done {
		a.trailers = slices.Clone(a.trailers) // they wait with the data: the caller's may be reused
	}
}

// push writes what the windows take; the stream ends once all went.
func (a *answer) push() {
	if a.done || a.c.closed {
		return
	}
	if len(a.data) > 0 {
		n := a.c.ss.WriteData(a.st, a.data, false)
		a.data = a.data[n:]
		if len(a.data) > 0 {
			if a.c.blocked == nil {
				a.c.blocked = map[*answer]struct{}{}
			}
			a.c.blocked[a] = struct{}{}
			return
		}
		a.data = nil
	}
	if a.drained != nil {
		a.drained()
	}
	if a.ending {
		a.c.ss.WriteTrailers(a.st, a.trailers)
		a.close()
	}
}

// close ends the stream for the loop, answered or not.
func (a *answer) close() {
	if !a.done {
		a.done = true
		a.c.ss.Close(a.st)
		delete(a.c.blocked, a)
	}
}

// fail ends the call with err's status, trailers-only when nothing was
// answered yet (headers false).
func (a *answer) fail(err error, headers bool) {
	f := statusFields(a.c.st.fields[:0], err)
	a.c.st.fields = f
	if headers {
		a.send(nil, f, true)
		return
	}
	if !a.done {
		a.c.ss.WriteHeaders(a.st, 200, append(f, grpcContentType...), true)
		a.close()
	}
}

var (
	grpcContentType = []hpack.HeaderField{{Name: "content-type", Value: "application/grpc"}}
	grpcOK          = []hpack.HeaderField{{Name: "grpc-status", Value: "0"}}
)

// unaryCall is a call of a Unary method.
type unaryCall struct {
	c      *conn
	st     *h2.SessionStream
	u      Unary
	method string
	fields []hpack.HeaderField
	few    [8]hpack.HeaderField // fields' memory for a call with few (gRPC clients send 6–8)
	a      answer
	body   []byte             // the request so far, when it came in pieces
	cancel context.CancelFunc // a waiting answer's context
	gone   bool               // reset, or answered
	call   Call               // the method's argument, in the call's memory
}

// data takes a piece of the request; the call runs at its end.
func (uc *unaryCall) data(p []byte, end bool) {
	if uc.gone {
		return
	}
	uc.c.ss.Consumed(uc.st, len(p))
	if max := uc.c.st.s.o.MaxRecvMsgSize + 5; len(uc.body)+len(p) > max {
		uc.fail(status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", len(uc.body)+len(p)-5, max-5))
		return
	}
	if !end {
		if uc.c.partial+len(p) > maxPartial {
			uc.fail(status.Errorf(codes.ResourceExhausted, "grpc: more than %d bytes of requests arriving at once on the connection", maxPartial))
			return
		}
		uc.c.partial += len(p)
		uc.body = append(uc.body, p...)
		return
	}
	if uc.body != nil {
		p = append(uc.body, p...)
		uc.dropBody()
	}
	uc.run(p)
}

// maxPartial bounds the bytes of unary requests a connection holds while
// they arrive in pieces (their windows are given back as they come, for
// a message may be larger than a window). A variable: tests lower it.
var maxPartial = 8 << 20

// dropBody lets go of the request's pieces.
func (uc *unaryCall) dropBody() {
	uc.c.partial -= len(uc.body)
	uc.body = nil
}

// fail ends the call with err's status.
func (uc *unaryCall) fail(err error) {
	uc.gone = true
	uc.dropBody()
	uc.a.fail(err, false)
}

// run decodes the request, b (a gRPC message frame) and answers it, on
// the loop or, when it may wait, on a goroutine.
func (uc *unaryCall) run(b []byte) {
	msg, err := oneMessage(b)
	if err != nil {
		uc.fail(err)
		return
	}
	uc.call = Call{Method: uc.method, Msg: msg, fields: uc.fields}
	call := &uc.call
	ans, err := uc.decode(call)
	if err != nil {
		uc.fail(err)
		return
	}
	if !ans.Waits {
		uc.gone = true
		st := uc.c.st
		out, err := uc.answer(context.Background(), ans, append(st.msg[:0], 0, 0, 0, 0, 0))
		uc.reply(out, err)
		if cap(out) <= readSize {
			st.msg = out[:0]
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := grpcTimeout(call.Field("grpc-timeout")); ok {
		ctx, cancel = context.WithTimeout(context.Background(), d)
	}
	uc.cancel = cancel
	st := uc.c.st
	s := st.s
	s.calls.Add(1)
	s.group.Workers().Run(func() {
		defer s.calls.Done()
		buf := answerBufs.Get().(*[]byte)
		out, err := uc.answer(ctx, ans, append((*buf)[:0], 0, 0, 0, 0, 0))
		st.answered(uc, out, err, buf)
	})
}

// answerBufs hold the answers of calls that waited, from the call's
// goroutine until the loop has queued the answer's frames (which copies
// it). Each has room for a check's response with a limiter's decision or
// two; one that grew past maxAnswerBuf is not kept.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

const maxAnswerBuf = 4 << 10

// decode and answer run the method's code: a panic fails the call with
// INTERNAL (and is logged), where grpc-go would let it end the process.
func (uc *unaryCall) decode(call *Call) (ans Answer, err error) {
	defer uc.recovered(&err)
	return uc.u(call)
}

func (uc *unaryCall) answer(ctx context.Context, ans Answer, out []byte) (_ []byte, err error) {
	defer uc.recovered(&err)
	return ans.Run(ctx, out)
}

func (uc *unaryCall) recovered(err *error) {
	if p := recover(); p != nil {
		uc.c.st.s.logger.Error("gRPC method panicked", "method", uc.method, "panic", p)
		*err = status.Error(codes.Internal, "grpc: the method failed")
	}
}

// waited answers a call that waited, unless it was reset meanwhile, and
// reports whether it did: its connection then has frames to write.
func (uc *unaryCall) waited(out []byte, err error) bool {
	uc.cancel()
	if uc.gone || uc.c.closed {
		return false
	}
	uc.gone = true
	uc.reply(out, err)
	return true
}

// reply sends out (the message framed, its 5 bytes of prefix first) or
// err's status.
func (uc *unaryCall) reply(out []byte, err error) {
	if err != nil {
		uc.a.fail(err, false)
		return
	}
	if len(out)-5 > 1<<32-1 {
		uc.a.fail(status.Error(codes.ResourceExhausted, "grpc: response message too large"), false)
		return
	}
	out[0] = 0
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-5))
	uc.c.ss.WriteHeaders(uc.st, 200, grpcContentType, false)
	uc.a.send(out, grpcOK, true)
}

// reset ends the call: a waiting answer's context ends, and the loop
// closes the stream (once its answer comes back, for a waiting one).
func (uc *unaryCall) reset() {
	if uc.cancel != nil {
		uc.cancel()
	}
	uc.gone = true
	uc.dropBody()
	uc.a.close()
}

// oneMessage is the message of b, a unary request: exactly one
// uncompressed gRPC message.
func oneMessage(b []byte) ([]byte, error) {
	if len(b) < 5 {
		return nil, status.Error(codes.Internal, "grpc: the request has no message")
	}
	if b[0] != 0 {
		return nil, status.Error(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(len(b)-5) != uint64(n) {
		return nil, status.Error(codes.Internal, "grpc: the request is not one whole message")
	}
	return b[5:], nil
}

// grpcTimeout decodes a grpc-timeout value ("<digits><unit>", at most 8
// digits).
func grpcTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > int64(1<<63-1)/int64(unit) {
		return 1<<63 - 1, true
	}
	return time.Duration(n) * unit, true
}
