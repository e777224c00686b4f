package h2

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Session is one HTTP/2 server connection's protocol for an owner that
// reads and writes the socket itself and runs the requests — the
// gateway's event loops, where a goroutine a connection is what costs.
// The owner gives it the bytes it read (Feed) and writes the bytes it
// queues (Output, then Wrote); the Session decodes the frames, answers
// the control frames, opens streams and hands each request, its body and
// its reset to the owner's SessionHandler, with ServeConn's checks,
// bounds, settings and error answers (doc.go). The owner answers a stream
// with WriteHeaders and WriteData, within the client's windows, and ends
// it with Close.
//
// The timeouts are the owner's, as it owns the timers: IdleTimeout while
// Open is 0, ReadTimeout for the preface and while a body arrives,
// WriteTimeout while Output is not empty. Server.OnIdle is not called.
//
// Not safe for concurrent use: one goroutine drives a Session, and the
// handler's methods run on it, within Feed, Close and GoAway.
type Session struct {
	s   *Server
	h   SessionHandler
	in  frameInput
	out sessionOutput
	fr  *http2.Framer

	hb          headerBlock
	blockFrames int // of the header block being read; 0 outside one
	henc        *hpack.Encoder
	hbuf        bytes.Buffer

	streams map[uint32]*SessionStream // opened and not closed by the owner, reset ones included
	live    int                       // of streams, those not reset

	maxStreams   int
	streamWindow int64
	connWindow   int64
	sendWindow   int64 // the connection's
	initWindow   int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame    int
	recvAvail    int64 // the connection's receive window left
	recvUsed     int64 // taken from it and not yet given back

	lastID     uint32 // the highest stream the client opened
	accepted   uint32 // the highest stream handed to the owner (GOAWAY's last stream)
	preface    bool   // the client preface came
	settings   bool   // and its first SETTINGS
	goingAway  bool
	err        error // the connection ends: GOAWAY queued, Feed takes nothing more
	resets     int
	resetStart time.Time

	req SessionRequest // handed to the owner by headers, and reused
}

// SessionHandler is a Session owner's part: the requests. Its methods run
// on the goroutine that drives the Session; they may call the Session's
// write methods.
type SessionHandler interface {
	// Request is a new stream, req valid only during the call (its
	// strings may be kept). The owner calls Close once it is done with
	// st, answered or not.
	Request(st *SessionStream, req *SessionRequest)
	// Data is a piece of st's request body (p valid only during the
	// call); end: the body is complete. The owner gives the bytes back
	// to the windows with Consumed once it took them.
	Data(st *SessionStream, p []byte, end bool)
	// Reset: st ended before its answer did (the client reset it, or
	// the connection ends). Writes to it are dropped; the owner still
	// calls Close.
	Reset(st *SessionStream)
	// Writable: the client's windows grew; WriteData may take more.
	Writable()
}

// SessionRequest is a request as the client sent it, checked as ServeConn
// checks one: Authority from :authority or the host field, Fields the
// regular fields without host, cookie fields as they came (HTTP/1.1 wants
// them joined with "; ").
type SessionRequest struct {
	Method, Scheme, Authority, Path string
	Fields                          []hpack.HeaderField
	ContentLength                   int64 // -1 without a content-length field
	End                             bool  // no body: END_STREAM came with the headers
}

// SessionStream is one stream of a Session. Value is the owner's.
type SessionStream struct {
	Value any

	id         uint32
	sendWindow int64
	recvAvail  int64 // the stream's receive window left
	unacked    int64 // consumed by the owner and not yet given back
	want, got  int64 // content-length (-1 without) and the DATA bytes received
	recvClosed bool  // END_STREAM came, or the stream was reset
	ended      bool  // the answer's END_STREAM went out
	reset      bool
	closed     bool // the owner called Close
}

// ID is the stream's identifier.
func (st *SessionStream) ID() uint32 { return st.id }

// Receiving reports whether the client may still send st's body.
func (st *SessionStream) Receiving() bool { return !st.recvClosed }

// Gone reports whether st was reset (or its connection ends): nothing
// more goes to the client.
func (st *SessionStream) Gone() bool { return st.reset }

// frameInput feeds the Framer one whole frame at a time.
type frameInput struct{ p []byte }

func (in *frameInput) Read(p []byte) (int, error) {
	if len(in.p) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, in.p)
	in.p = in.p[n:]
	return n, nil
}

// sessionOutput is what the Session queues for the client.
type sessionOutput struct{ b []byte }

func (o *sessionOutput) Write(p []byte) (int, error) {
	o.b = append(o.b, p...)
	return len(p), nil
}

var errSessionEnded = errors.New("h2: connection ended")

// NewSession returns the Session of a connection whose client preface is
// still to come, serving with s's limits (s's Handler is not used), its
// server preface (SETTINGS) queued.
func (s *Server) NewSession(h SessionHandler) *Session {
	ss := &Session{
		s: s, h: h,
		streams:    map[uint32]*SessionStream{},
		maxStreams: int(s.maxStreams()), streamWindow: int64(s.streamWindow()), connWindow: int64(s.connWindow()),
		sendWindow: 65535, initWindow: 65535, peerFrame: 16384,
	}
	ss.recvAvail = ss.connWindow
	ss.fr = http2.NewFramer(&ss.out, &ss.in)
	ss.fr.SetMaxReadFrameSize(maxReadFrameSize)
	ss.fr.SetReuseFrames()
	ss.hb.init()
	ss.henc = hpack.NewEncoder(&ss.hbuf)
	_ = ss.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(ss.maxStreams)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(ss.streamWindow)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: s.maxHeaderList()},
	)
	if ss.connWindow > 65535 {
		_ = ss.fr.WriteWindowUpdate(0, uint32(ss.connWindow-65535))
	}
	return ss
}

// Feed takes the bytes read from the client, at now: it handles every
// whole frame in p and returns how many bytes it took (the rest is a
// frame not yet whole: give it again with what follows). A non-nil error
// ends the connection: write what Output holds (a GOAWAY, when the client
// is owed one), then close. The handler's methods run within Feed.
func (ss *Session) Feed(now time.Time, p []byte) (int, error) {
	if ss.err != nil {
		return 0, ss.err
	}
	n := 0
	if !ss.preface {
		k := min(len(p), len(http2.ClientPreface))
		if string(p[:k]) != http2.ClientPreface[:k] {
			ss.s.count(ReasonBadPreface)
			ss.goAway(http2.ErrCodeProtocol)
			return 0, ss.err
		}
		if k < len(http2.ClientPreface) {
			return 0, nil
		}
		ss.preface = true
		n = k
	}
	for ss.err == nil {
		rest := p[n:]
		if len(rest) < 9 {
			break
		}
		size := 9 + (int(rest[0])<<16 | int(rest[1])<<8 | int(rest[2]))
		if size-9 > maxReadFrameSize {
			size = 9 // the Framer refuses it from its header
		} else if len(rest) < size {
			break
		}
		ss.in.p = rest[:size]
		f, err := ss.fr.ReadFrame()
		n += size
		ss.frame(now, f, err)
	}
	return n, ss.err
}

// frame handles what one ReadFrame returned.
func (ss *Session) frame(now time.Time, f http2.Frame, err error) {
	if err == nil {
		switch hf := f.(type) {
		case *http2.HeadersFrame:
			f, err = ss.headerFragment(hf.StreamID, hf, hf.HeaderBlockFragment(), hf.HeadersEnded())
		case *http2.ContinuationFrame: // the Framer checks that it follows its HEADERS
			f, err = ss.headerFragment(hf.StreamID, nil, hf.HeaderBlockFragment(), hf.HeadersEnded())
		}
		if f == nil && err == nil {
			return // a header block's CONTINUATIONs are still to come
		}
	}
	if err != nil {
		ss.readError(err)
		return
	}
	if !ss.settings {
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			ss.s.count(ReasonBadPreface)
			ss.goAway(http2.ErrCodeProtocol)
			return
		}
		ss.settings = true
	}
	var ce connError
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		ce = ss.headers(f)
	case *http2.DataFrame:
		ce = ss.data(f)
	case *http2.SettingsFrame:
		ce = ss.settingsFrame(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			_ = ss.fr.WritePing(true, f.Data)
		}
	case *http2.WindowUpdateFrame:
		ce = ss.windowUpdate(f)
	case *http2.RSTStreamFrame:
		ce = ss.rstStream(now, f)
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open finish.
	case *http2.PushPromiseFrame:
		ce = connError{http2.ErrCodeProtocol, ReasonProtocol, "PUSH_PROMISE from a client"}
	case *http2.PriorityFrame:
		if f.StreamID == f.StreamDep {
			ss.resetID(f.StreamID, http2.ErrCodeProtocol)
		}
	}
	if ce.code != 0 || ce.reason != "" {
		ss.s.count(ce.reason)
		ss.goAway(ce.code)
	}
}

// headerFragment decodes one fragment of a header block (hf set for the
// HEADERS that opens it): the block when it is whole, nil before.
func (ss *Session) headerFragment(id uint32, hf *http2.HeadersFrame, frag []byte, ended bool) (http2.Frame, error) {
	if hf != nil {
		ss.hb.begin(hf, ss.s.maxHeaderList())
		ss.blockFrames = 0
	}
	if ss.blockFrames++; ss.blockFrames > maxHeaderFrames {
		return nil, errHeaderFlood
	}
	if err := ss.hb.add(frag); err != nil {
		return nil, err
	}
	if !ended {
		return nil, nil
	}
	ss.blockFrames = 0
	meta, err := ss.hb.end()
	if err != nil {
		return nil, err
	}
	return meta, nil
}

// readError handles an error of ReadFrame or of a header block as
// ServeConn's reader does: a stream error resets the stream, anything
// else ends the connection.
func (ss *Session) readError(err error) {
	var se http2.StreamError
	if errors.As(err, &se) {
		if se.StreamID > ss.lastID && se.StreamID%2 == 1 {
			ss.lastID = se.StreamID // a malformed HEADERS: the stream is closed
		}
		ss.s.count(ReasonMalformedRequest)
		ss.resetID(se.StreamID, se.Code)
		return
	}
	code, reason, ok := frameError(err)
	if !ok { // none other comes from whole frames; end the connection all the same
		code, reason = http2.ErrCodeProtocol, ReasonProtocol
	}
	ss.s.count(reason)
	ss.goAway(code)
}

// headers handles a whole header block: a new request, or trailers.
func (ss *Session) headers(f *http2.MetaHeadersFrame) connError {
	id := f.StreamID
	if id%2 == 0 {
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "HEADERS on an even stream"}
	}
	if id <= ss.lastID {
		st := ss.streams[id]
		if st == nil || st.reset || st.recvClosed {
			return connError{http2.ErrCodeStreamClosed, ReasonProtocol, "HEADERS on a closed stream"}
		}
		return ss.trailers(st, f)
	}
	ss.lastID = id
	switch {
	case ss.goingAway:
		return connError{} // past the GOAWAY's last stream: ignored, the client retries elsewhere
	case f.HasPriority() && f.Priority.StreamDep == id:
		_ = ss.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
		return connError{}
	case f.Truncated:
		ss.s.count(ReasonHeaderListTooLong)
		ss.answerAndClose(id, http.StatusRequestHeaderFieldsTooLarge, !f.StreamEnded())
		return connError{}
	}
	req := &ss.req // the owner's only during Request: the next HEADERS reuses it
	*req = SessionRequest{ContentLength: -1, End: f.StreamEnded(), Fields: req.Fields[:0]}
	status, ok := ss.request(f, req)
	if !ok {
		ss.s.count(ReasonMalformedRequest)
		if status != 0 {
			ss.answerAndClose(id, status, !f.StreamEnded())
		} else {
			_ = ss.fr.WriteRSTStream(id, http2.ErrCodeProtocol)
		}
		return connError{}
	}
	switch {
	case ss.live >= ss.maxStreams:
		ss.s.count(ReasonRefusedStream)
		_ = ss.fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		return connError{}
	case len(ss.streams) >= 2*ss.maxStreams:
		return connError{http2.ErrCodeEnhanceYourCalm, ReasonRapidReset, "too many streams open (reset and reopened)"}
	}
	st := &SessionStream{id: id, sendWindow: ss.initWindow, recvAvail: ss.streamWindow, want: req.ContentLength, recvClosed: req.End}
	ss.streams[id] = st
	ss.live++
	ss.accepted = id
	ss.h.Request(st, req)
	if cap(req.Fields) > maxKeptFields { // as a connection's (hpack.go)
		req.Fields = nil
	}
	return connError{}
}

// request fills req from f's fields; not ok as conn.newRequest.
func (ss *Session) request(f *http2.MetaHeadersFrame, req *SessionRequest) (status int, ok bool) {
	p, ok := pseudo(f)
	if !ok {
		return 0, false
	}
	if status, ok := p.check(); !ok {
		return status, false
	}
	fields := f.RegularFields()
	for _, hf := range fields {
		keep, ok := requestField(hf, &req.ContentLength, &p.authority)
		if !ok {
			return 0, false
		}
		if keep {
			req.Fields = append(req.Fields, hf)
		}
	}
	if !p.authorityValid() || req.End && req.ContentLength > 0 {
		return 0, false
	}
	req.Method, req.Scheme, req.Authority, req.Path = p.method, p.scheme, p.authority, p.path
	return 0, true
}

// trailers handles the HEADERS that end a request body: their fields are
// dropped (the loop's HTTP/1.1 requests carry a content-length), the body
// ends.
func (ss *Session) trailers(st *SessionStream, f *http2.MetaHeadersFrame) connError {
	switch {
	case !f.StreamEnded():
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "trailers without END_STREAM"}
	case len(f.PseudoFields()) > 0, st.want >= 0 && st.got != st.want:
		ss.s.count(ReasonMalformedRequest)
		ss.resetStream(st, http2.ErrCodeProtocol)
		return connError{}
	}
	st.recvClosed = true
	ss.h.Data(st, nil, true)
	return connError{}
}

// data handles a DATA frame, within the receive windows.
func (ss *Session) data(f *http2.DataFrame) connError {
	n := int64(f.Length) // padding included, as flow control counts it
	if ss.recvAvail -= n; ss.recvAvail < 0 {
		return connError{http2.ErrCodeFlowControl, ReasonFlowControl, "DATA past the connection window"}
	}
	id := f.StreamID
	st := ss.streams[id]
	switch {
	case st == nil && id > ss.lastID:
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "DATA on an idle stream"}
	case st == nil || st.reset:
		ss.consumed(n)
		_ = ss.fr.WriteRSTStream(id, http2.ErrCodeStreamClosed)
		return connError{}
	case st.recvClosed:
		ss.consumed(n)
		ss.resetStream(st, http2.ErrCodeStreamClosed)
		return connError{}
	case st.recvAvail-n < 0:
		ss.consumed(n)
		ss.s.count(ReasonFlowControl)
		ss.resetStream(st, http2.ErrCodeFlowControl)
		return connError{}
	}
	data := f.Data()
	st.recvAvail -= n
	st.got += int64(len(data))
	if st.want >= 0 && (st.got > st.want || f.StreamEnded() && st.got != st.want) {
		ss.consumed(n)
		ss.s.count(ReasonMalformedRequest)
		ss.resetStream(st, http2.ErrCodeProtocol)
		return connError{}
	}
	if pad := n - int64(len(data)); pad > 0 {
		st.unacked += pad
		ss.consumed(pad)
	}
	if f.StreamEnded() {
		st.recvClosed = true
	}
	if len(data) > 0 || f.StreamEnded() {
		ss.h.Data(st, data, f.StreamEnded())
	}
	return connError{}
}

// Consumed gives n bytes of st's body, taken by the owner, back to the
// client's windows: WINDOW_UPDATE once half a window is used.
func (ss *Session) Consumed(st *SessionStream, n int) {
	if n <= 0 || ss.err != nil {
		return
	}
	if !st.recvClosed && !st.reset {
		if st.unacked += int64(n); st.unacked >= ss.streamWindow/2 {
			inc := st.unacked
			st.unacked = 0
			st.recvAvail += inc
			_ = ss.fr.WriteWindowUpdate(st.id, uint32(inc))
		}
	}
	ss.consumed(int64(n))
}

// consumed gives n bytes back to the connection's receive window.
func (ss *Session) consumed(n int64) {
	if n <= 0 {
		return
	}
	if ss.recvUsed += n; ss.recvUsed < ss.connWindow/2 {
		return
	}
	inc := ss.recvUsed
	ss.recvUsed = 0
	ss.recvAvail += inc
	_ = ss.fr.WriteWindowUpdate(0, uint32(inc))
}

func (ss *Session) settingsFrame(f *http2.SettingsFrame) connError {
	if f.IsAck() {
		return connError{}
	}
	var bad connError
	_ = f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			code := http2.ErrCodeProtocol
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				code = http2.ErrCode(ce)
			}
			bad = connError{code, ReasonProtocol, "bad setting " + s.String()}
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - ss.initWindow
			ss.initWindow = int64(s.Val)
			for _, st := range ss.streams {
				if st.sendWindow += delta; st.sendWindow > 1<<31-1 {
					bad = connError{http2.ErrCodeFlowControl, ReasonFlowControl, "a stream window past 2^31-1"}
					return errSessionEnded
				}
			}
		case http2.SettingMaxFrameSize:
			ss.peerFrame = int(s.Val)
		case http2.SettingHeaderTableSize:
			ss.henc.SetMaxDynamicTableSizeLimit(s.Val)
		}
		return nil
	})
	if bad.reason != "" {
		return bad
	}
	_ = ss.fr.WriteSettingsAck()
	ss.h.Writable()
	return connError{}
}

func (ss *Session) windowUpdate(f *http2.WindowUpdateFrame) connError {
	inc := int64(f.Increment)
	if f.StreamID == 0 {
		if ss.sendWindow += inc; ss.sendWindow > 1<<31-1 {
			return connError{http2.ErrCodeFlowControl, ReasonFlowControl, "the connection window past 2^31-1"}
		}
		ss.h.Writable()
		return connError{}
	}
	st := ss.streams[f.StreamID]
	switch {
	case st == nil && f.StreamID > ss.lastID:
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "WINDOW_UPDATE on an idle stream"}
	case st == nil || st.reset:
		return connError{} // a stream answered or reset: the update comes late
	}
	if st.sendWindow += inc; st.sendWindow > 1<<31-1 {
		ss.s.count(ReasonFlowControl)
		ss.resetStream(st, http2.ErrCodeFlowControl)
		return connError{}
	}
	ss.h.Writable()
	return connError{}
}

func (ss *Session) rstStream(now time.Time, f *http2.RSTStreamFrame) connError {
	if f.StreamID > ss.lastID {
		return connError{http2.ErrCodeProtocol, ReasonProtocol, "RST_STREAM on an idle stream"}
	}
	st := ss.streams[f.StreamID]
	if st == nil || st.reset {
		return connError{}
	}
	ss.markReset(st)
	if now.Sub(ss.resetStart) > time.Second {
		ss.resetStart, ss.resets = now, 0
	}
	if ss.resets++; ss.resets > ss.s.maxResets() {
		return connError{http2.ErrCodeEnhanceYourCalm, ReasonRapidReset, "too many streams reset by the client"}
	}
	return connError{}
}

// resetID resets stream id, open or not.
func (ss *Session) resetID(id uint32, code http2.ErrCode) {
	if st := ss.streams[id]; st != nil {
		ss.resetStream(st, code)
		return
	}
	_ = ss.fr.WriteRSTStream(id, code)
}

// resetStream resets st from this side (RST_STREAM code).
func (ss *Session) resetStream(st *SessionStream, code http2.ErrCode) {
	if st.reset {
		return
	}
	ss.markReset(st)
	_ = ss.fr.WriteRSTStream(st.id, code)
}

// markReset ends st's life on the connection and tells the owner.
func (ss *Session) markReset(st *SessionStream) {
	st.reset, st.recvClosed = true, true
	ss.live--
	ss.h.Reset(st)
}

// answerAndClose answers a stream the owner never sees with a bare status
// (431, 501) and, if the client is still sending, resets it.
func (ss *Session) answerAndClose(id uint32, status int, open bool) {
	ss.hbuf.Reset()
	_ = ss.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	_ = ss.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
	_ = ss.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: ss.hbuf.Bytes(), EndStream: true, EndHeaders: true})
	if open {
		_ = ss.fr.WriteRSTStream(id, http2.ErrCodeNo)
	}
}

// WriteHeaders queues st's response HEADERS: status and fields (names in
// lower case; connection-specific fields and invalid ones are dropped),
// with END_STREAM if end. Dropped once st is gone.
func (ss *Session) WriteHeaders(st *SessionStream, status int, fields []hpack.HeaderField, end bool) {
	if st.reset || st.ended || ss.err != nil {
		return
	}
	ss.hbuf.Reset()
	_ = ss.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
	for _, hf := range fields {
		if connectionSpecific[hf.Name] || !validWireName(hf.Name) || hf.Name == "te" && hf.Value != "trailers" {
			continue
		}
		_ = ss.henc.WriteField(hf)
	}
	_ = writeBlock(ss.fr, st.id, ss.hbuf.Bytes(), end, ss.peerFrame)
	if end && status >= 200 {
		st.ended = true
	}
}

// WriteTrailers queues st's trailers (names in lower case; as
// WriteHeaders drops some) in a HEADERS frame that ends the stream, after
// its answer's HEADERS and DATA. Dropped once st is gone.
func (ss *Session) WriteTrailers(st *SessionStream, fields []hpack.HeaderField) {
	if st.reset || st.ended || ss.err != nil {
		return
	}
	ss.hbuf.Reset()
	for _, hf := range fields {
		if connectionSpecific[hf.Name] || !validWireName(hf.Name) || hf.Name == "te" {
			continue
		}
		_ = ss.henc.WriteField(hf)
	}
	_ = writeBlock(ss.fr, st.id, ss.hbuf.Bytes(), true, ss.peerFrame)
	st.ended = true
}

// WriteData queues as much of p as the client's windows take, as DATA
// frames of st, the last with END_STREAM if end and all of p went: it
// returns how much went. The rest waits for Writable. Nothing goes once
// st is gone (it returns len(p)).
func (ss *Session) WriteData(st *SessionStream, p []byte, end bool) int {
	if st.reset || st.ended || ss.err != nil {
		return len(p)
	}
	n := min(len(p), ss.Window(st))
	ss.sendWindow -= int64(n)
	st.sendWindow -= int64(n)
	for q := p[:n]; ; {
		k := min(len(q), ss.peerFrame)
		last := end && n == len(p) && k == len(q)
		if k == 0 && !last {
			break
		}
		_ = ss.fr.WriteData(st.id, last, q[:k])
		q = q[k:]
		if last {
			st.ended = true
			break
		}
	}
	return n
}

// Window is how many bytes of DATA st may send now: the smaller of the
// client's windows, the connection's and the stream's.
func (ss *Session) Window(st *SessionStream) int {
	return int(max(min(ss.sendWindow, st.sendWindow), 0))
}

// Close ends the owner's part in st: a stream whose answer did not end is
// reset (INTERNAL_ERROR), one whose client still sends is reset NO_ERROR.
func (ss *Session) Close(st *SessionStream) {
	if st.closed {
		return
	}
	st.closed = true
	delete(ss.streams, st.id)
	if !st.reset {
		st.reset = true
		ss.live--
		switch {
		case !st.ended:
			_ = ss.fr.WriteRSTStream(st.id, http2.ErrCodeInternal)
		case !st.recvClosed:
			_ = ss.fr.WriteRSTStream(st.id, http2.ErrCodeNo)
		}
	}
	if ss.goingAway && len(ss.streams) == 0 && ss.err == nil {
		ss.err = errSessionEnded
	}
}

// Open is the number of streams the owner has not closed.
func (ss *Session) Open() int { return len(ss.streams) }

// GoAway queues GOAWAY NO_ERROR with the last stream handed to the owner:
// no stream is opened after it, and the connection ends (Feed returns an
// error; Ended reports true) once the owner closed every stream.
func (ss *Session) GoAway() {
	if ss.goingAway || ss.err != nil {
		return
	}
	ss.goingAway = true
	_ = ss.fr.WriteGoAway(ss.accepted, http2.ErrCodeNo, nil)
	if len(ss.streams) == 0 {
		ss.err = errSessionEnded
	}
}

// Started reports whether the client's preface and first SETTINGS came.
func (ss *Session) Started() bool { return ss.settings }

// End ends the connection without a word to the client (it closed, or its
// socket failed): every stream not yet reset is, for the owner, and
// nothing more is queued.
func (ss *Session) End() {
	if ss.err == nil {
		ss.err = errSessionEnded
	}
	for _, st := range ss.streams {
		if !st.reset {
			ss.markReset(st)
		}
	}
	ss.out.b = ss.out.b[:0]
}

// Ended reports whether the connection is to close once Output is
// written: after a connection error or a graceful GOAWAY with every
// stream closed.
func (ss *Session) Ended() bool { return ss.err != nil }

// goAway ends the connection with GOAWAY code: every open stream is reset
// for the owner.
func (ss *Session) goAway(code http2.ErrCode) {
	if ss.err != nil {
		return
	}
	_ = ss.fr.WriteGoAway(ss.lastID, code, nil)
	ss.err = errSessionEnded
	for _, st := range ss.streams {
		if !st.reset {
			ss.markReset(st)
		}
	}
}

// Output is what waits to be written to the client; after a write, Wrote
// says how much of it went.
func (ss *Session) Output() []byte { return ss.out.b }

// Wrote drops the first n bytes of Output.
func (ss *Session) Wrote(n int) {
	b := ss.out.b
	if n >= len(b) {
		if cap(b) > 4*bufferSize {
			b = nil // a burst does not keep its buffer
		}
		ss.out.b = b[:0]
		return
	}
	ss.out.b = b[:copy(b, b[n:])]
}

// writeBlock writes a header block as HEADERS and CONTINUATION frames of
// at most frame bytes.
func writeBlock(fr *http2.Framer, id uint32, block []byte, end bool, frame int) error {
	first := block[:min(len(block), frame)]
	block = block[len(first):]
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		part := block[:min(len(block), frame)]
		block = block[len(part):]
		if err := fr.WriteContinuation(id, len(block) == 0, part); err != nil {
			return err
		}
	}
	return nil
}
