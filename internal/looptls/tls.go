//go:build linux

package looptls

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/internal/eventloop"
)

// InSize is the size of a loop's read buffer for TLS clients: two records
// of the largest size.
const InSize = 2 * (16<<10 + 256 + 5)

// outKeep bounds the write buffer a loop keeps for its TLS clients.
const outKeep = 256 << 10

// Buffers are a loop's buffers for its TLS connections; the zero value
// is ready, and makes them at their first use. Only the loop uses them.
type Buffers struct {
	// in is what the connections' sockets are read into (InSize bytes):
	// each read's records are decrypted before the next connection's
	// read.
	in []byte
	// out is what the connections' answers are written into while no
	// connection holds it: one whose client does not take all keeps it
	// until it does.
	out []byte
}

// TLS is a loop connection's TLS: its tls.Conn and the Conn under it.
type TLS struct {
	tc *tls.Conn
	w  *Conn
	// more: the last read stopped with its buffer full, or with an error
	// after bytes, so the tls.Conn (or w.in) may hold more than the
	// socket would tell: read again without waiting for it. True after
	// the handshake, whose reads may have taken the first request.
	more bool
}

// New returns the TLS of tc, a connection built on w (Handshaken) and
// detached.
func New(tc *tls.Conn, w *Conn) *TLS { return &TLS{tc: tc, w: w, more: true} }

// Conn is the connection's tls.Conn.
func (t *TLS) Conn() *tls.Conn { return t.tc }

// RemoteAddr is the client's address.
func (t *TLS) RemoteAddr() net.Addr { return t.w.remote }

// More reports whether the last Read may have left plaintext or
// ciphertext the socket's readiness would not tell of: read again.
func (t *TLS) More() bool { return t.more }

// Waiting is the ciphertext written and not yet sent (a view of the
// connection's buffer; nil when none): after a Read too, which may have
// written (the reply to a TLS 1.3 KeyUpdate). A loop counts it with its
// answers waiting, so that a client that does not read stops being read
// and meets the write timeout.
func (t *TLS) Waiting() []byte {
	if w := t.w; w.outR < len(w.out) {
		return w.out[w.outR:]
	}
	return nil
}

// errNotTaken is Read's error when what reads made the connection write
// waits past outKeep bytes: a client that makes the server write (each
// KeyUpdate it sends asks for one) and takes none of it.
var errNotTaken = errors.New("looptls: the client takes none of the records its own records made the server write")

// Holds reports whether the connection holds a buffer of its own:
// ciphertext read and not decrypted, or written and not sent.
func (t *TLS) Holds() bool { return len(t.w.in) > 0 || t.w.out != nil }

// Read reads the socket fd once, unless ciphertext is held, and returns
// the plaintext of the records that came, up to len(p). It returns (0,
// nil) at the client's end (as unix.Read does), (0, unix.EAGAIN) when no
// whole record came, and a TLS error as it is. What a read writes (a
// KeyUpdate's reply) is sent as far as the socket takes it; the rest is
// Waiting, and past outKeep bytes of it Read fails.
func (t *TLS) Read(b *Buffers, fd int, p []byte) (int, error) {
	w := t.w
	t.more = false
	if len(w.out)-w.outR > outKeep {
		return 0, errNotTaken // a bound for loops that read on while records wait
	}
	borrowed := false // w.in is the loop's buffer
	if w.inR == len(w.in) && w.end == nil {
		if b.in == nil {
			b.in = make([]byte, InSize)
		}
		m, err := unix.Read(fd, b.in)
		switch {
		case m > 0:
			w.in, w.inR, borrowed = b.in[:m], 0, true
		case err == nil:
			w.end = io.EOF
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		default:
			w.end = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
		}
	}
	n := 0
	var err error
	for n < len(p) {
		var k int
		k, err = t.tc.Read(p[n:])
		n += k
		if err != nil {
			break
		}
	}
	if borrowed && w.inR < len(w.in) {
		// The loop's buffer serves its next connection: keep what is left.
		w.in, w.inR = append([]byte(nil), w.in[w.inR:]...), 0
	}
	if w.outR < len(w.out) {
		// A read that wrote (a reply to a KeyUpdate). What the socket
		// does not take now goes before the next answer's bytes.
		_, _ = t.Flush(b, fd)
	}
	switch {
	case n == len(p):
		t.more = true
	case err != nil && n > 0 && !errors.Is(err, errWouldBlock):
		t.more = true // the error comes with the next read (tls.Conn keeps it)
	}
	if n > 0 {
		return n, nil
	}
	switch {
	case errors.Is(err, errWouldBlock):
		return 0, unix.EAGAIN
	case errors.Is(err, io.EOF):
		return 0, nil
	}
	return 0, err
}

// Flush writes what the tls.Conn wrote and the socket has not taken; it
// returns what is left (a view of the connection's buffer, nil when
// nothing is). A buffer written whole goes back to the loop's Buffers if
// they have none.
func (t *TLS) Flush(b *Buffers, fd int) ([]byte, error) {
	w := t.w
	if w.outR < len(w.out) {
		n, err := eventloop.Write(fd, w.out[w.outR:])
		w.outR += n
		if err != nil {
			return nil, err
		}
		if w.outR < len(w.out) {
			return w.out[w.outR:], nil
		}
	}
	if b.out == nil && cap(w.out) <= outKeep {
		b.out = w.out[:0]
	}
	w.out, w.outR = nil, 0
	return nil, nil
}

// Write encrypts p and sends it; it returns what the socket did not take
// (see Flush). The records are written into the loop's buffer when
// nothing waits: a connection holds a write buffer only while its client
// has not taken what it holds.
func (t *TLS) Write(b *Buffers, fd int, p []byte) ([]byte, error) {
	t.borrow(b)
	if _, err := t.tc.Write(p); err != nil {
		return nil, err
	}
	return t.Flush(b, fd)
}

// borrow writes into the loop's buffer when nothing waits in w's.
func (t *TLS) borrow(b *Buffers) {
	if w := t.w; len(w.out) == 0 && b.out != nil {
		w.out, w.outR, b.out = b.out[:0], 0, nil
	}
}

// CloseNotify sends the close_notify alert, unless ciphertext waits, and
// what waits, one try, before the loop closes the socket (as
// tls.Conn.Close does, without waiting).
func (t *TLS) CloseNotify(b *Buffers, fd int) {
	if t.w.outR == len(t.w.out) {
		t.borrow(b)
		_ = t.tc.CloseWrite()
	}
	_, _ = t.Flush(b, fd)
}

// Resume makes the tls.Conn read and write c, a blocking connection over
// the socket, after what the loop left (a hand-over to a goroutine), and
// returns it.
func (t *TLS) Resume(c net.Conn) *tls.Conn {
	t.w.Conn = c
	return t.tc
}
