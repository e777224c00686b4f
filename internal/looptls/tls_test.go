//go:build linux

package looptls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fluxgate/fluxgate/certs/certstest"
	"github.com/fluxgate/fluxgate/internal/looptls/looptlstest"
)

// Unit tests of Conn and TLS over a socket pair.

// captureConn is a client's connection whose writes can be kept
// (capturing) instead of sent: a test then sends a record's bytes in
// pieces of its choosing.
type captureConn struct {
	net.Conn
	capturing bool
	kept      []byte
	keylog    bytes.Buffer // the client's key log (looptlstest)
}

func (c *captureConn) Write(p []byte) (int, error) {
	if c.capturing {
		c.kept = append(c.kept, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// tlsOnFD is a server TLS connection handshaken over a socket pair and
// moved off Go's poller (detach) as a loop takes it, and its client.
func tlsOnFD(t *testing.T) (lt *TLS, fd int, client *tls.Conn, cc *captureConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fileConn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv, cli := fileConn(fds[0]), fileConn(fds[1])
	t.Cleanup(func() { _ = cli.Close() })
	ca := certstest.NewCA(t, "pair.test CA")
	pair := ca.Server(t, "pair.test")
	w := Wrap(srv).(*Conn)
	stc := tls.Server(w, &tls.Config{Certificates: []tls.Certificate{pair.TLS}})
	cc = &captureConn{Conn: cli}
	client = tls.Client(cc, &tls.Config{RootCAs: ca.Pool(), ServerName: "pair.test", KeyLogWriter: &cc.keylog})
	errc := make(chan error, 1)
	go func() { errc <- stc.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	fd, slot, err := w.Detach()
	if err != nil || slot != nil {
		t.Fatalf("detach: %v, slot %v", err, slot)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if _, got, err := Handshaken(stc); err != nil || got != w {
		t.Fatalf("Handshaken: %v; not the Conn the tls.Conn was built on", err)
	}
	return &TLS{tc: stc, w: w}, fd, client, cc
}

// The facts the loop builds on: a read with no ciphertext, or part of a
// record, would block and is not kept (tls.Conn keeps other errors); the
// record is read once whole; the client's close_notify ends it cleanly.
func TestConnWouldBlockIsNotSticky(t *testing.T) {
	lt, fd, client, cc := tlsOnFD(t)
	b := &Buffers{}
	p := make([]byte, 64)
	if n, err := lt.Read(b, fd, p); n != 0 || !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("nothing sent: read %d, %v; want 0, EAGAIN", n, err)
	}
	cc.capturing = true
	if _, err := io.WriteString(client, "hello"); err != nil {
		t.Fatal(err)
	}
	cc.capturing = false
	record := cc.kept
	for _, cut := range []int{3, len(record) - 1, len(record)} { // in the header, in the body, whole
		prev := 0
		if cut > 3 {
			prev = 3
		}
		if cut == len(record) {
			prev = len(record) - 1
		}
		if _, err := cc.Conn.Write(record[prev:cut]); err != nil {
			t.Fatal(err)
		}
		n, err := lt.Read(b, fd, p)
		if cut < len(record) {
			if n != 0 || !errors.Is(err, unix.EAGAIN) {
				t.Fatalf("%d of the record's %d bytes: read %d, %v; want 0, EAGAIN", cut, len(record), n, err)
			}
			continue
		}
		if err != nil || string(p[:n]) != "hello" {
			t.Fatalf("the whole record: read %q, %v; want hello", p[:n], err)
		}
	}
	if _, err := io.WriteString(client, "world"); err != nil {
		t.Fatal(err)
	}
	if n, err := lt.Read(b, fd, p); err != nil || string(p[:n]) != "world" {
		t.Fatalf("after: read %q, %v; want world", p[:n], err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := lt.Read(b, fd, p); n != 0 || err != nil {
		t.Fatalf("after close_notify: read %d, %v; want the end (0, nil)", n, err)
	}
}

// Records read from the socket at once are all returned, a small buffer
// at a time, without the socket: more says so. Handed back to a blocking
// connection (resume), the tls.Conn reads what the loop left first.
func TestConnHoldsRecordsAcrossReads(t *testing.T) {
	lt, fd, client, cc := tlsOnFD(t)
	b := &Buffers{}
	var want strings.Builder
	cc.capturing = true
	for i := range 6 {
		s := strings.Repeat(string(rune('a'+i)), 1000)
		want.WriteString(s)
		if _, err := io.WriteString(client, s); err != nil {
			t.Fatal(err)
		}
	}
	cc.capturing = false
	if _, err := cc.Conn.Write(cc.kept); err != nil { // six records, one write
		t.Fatal(err)
	}
	var got []byte
	p := make([]byte, 700)
	for len(got) < 3000 {
		n, err := lt.Read(b, fd, p)
		if err != nil || n == 0 {
			t.Fatalf("after %d bytes: read %d, %v", len(got), n, err)
		}
		got = append(got, p[:n]...)
		if !lt.More() {
			t.Fatalf("after %d bytes from a full buffer, more is false", len(got))
		}
	}
	if in := lt.w.in; len(in) > 0 && &in[:cap(in)][cap(in)-1] == &b.in[len(b.in)-1] {
		t.Fatal("the ciphertext left is in the loop's buffer, which the next connection's read overwrites")
	}
	// The rest goes with the connection to a goroutine.
	dup, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "")
	nc, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := lt.Resume(nc)
	_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest := make([]byte, 6000-len(got))
	if _, err := io.ReadFull(tc, rest); err != nil {
		t.Fatalf("after resume: %v", err)
	}
	if got = append(got, rest...); string(got) != want.String() {
		t.Fatal("the records read differ from those sent")
	}
	// And writes go through it, in order.
	go func() { _, _ = io.WriteString(tc, "answer") }()
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	ans := make([]byte, 6)
	if _, err := io.ReadFull(client, ans); err != nil || string(ans) != "answer" {
		t.Fatalf("client read %q, %v", ans, err)
	}
}

// What the socket does not take waits in the wrapper, in order, until
// the loop flushes it again.
func TestConnWriteWaits(t *testing.T) {
	lt, fd, client, _ := tlsOnFD(t)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10)
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i % 251)
	}
	b := &Buffers{}
	rest, err := lt.Write(b, fd, body)
	if err != nil || len(rest) == 0 {
		t.Fatalf("1 MiB to a socket pair: %d bytes left, %v; want some left", len(rest), err)
	}
	got := make(chan []byte, 1)
	go func() {
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, len(body))
		n, _ := io.ReadFull(client, b)
		got <- b[:n]
	}()
	for len(rest) > 0 {
		if rest, err = lt.Flush(b, fd); err != nil {
			t.Fatal(err)
		}
		if len(rest) > 0 {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			_, _ = unix.Poll(pfd, 1000)
		}
	}
	if b := <-got; string(b) != string(body) {
		t.Fatalf("the client read %d bytes, not what was written", len(b))
	}
}

// Handshaken takes only a *tls.Conn built on Wrap, and says what else it
// was given.
func TestHandshaken(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for _, c := range []net.Conn{a, tls.Server(a, &tls.Config{})} {
		if _, _, err := Handshaken(c); err == nil || !strings.Contains(err.Error(), "not built on looptls.Wrap") {
			t.Errorf("%T: %v", c, err)
		}
	}
	w := Wrap(a).(*Conn)
	tc := tls.Server(w, &tls.Config{})
	if gotTC, gotW, err := Handshaken(tc); err != nil || gotTC != tc || gotW != w {
		t.Errorf("a tls.Conn on Wrap: %v", err)
	}
}

// A client that sends KeyUpdates (each asks the server for one of its
// own) and reads nothing: the replies wait (Waiting), and once more than
// outKeep bytes of them do, Read fails instead of keeping more.
func TestReadBoundsWhatItWrites(t *testing.T) {
	lt, fd, client, cc := tlsOnFD(t)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10)
	r, err := looptlstest.New(client, cc.keylog.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	b, p := &Buffers{}, make([]byte, 1024)
	waited := 0
	for range 100_000 {
		var batch []byte
		for range 15 { // crypto/tls ends a connection after 16 records in a row that carry no data
			ku, err := r.KeyUpdate()
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, ku...)
		}
		if _, err := cc.Conn.Write(append(batch, r.Data([]byte("x"))...)); err != nil {
			t.Fatal(err)
		}
		for {
			n, err := lt.Read(b, fd, p)
			if errors.Is(err, errNotTaken) {
				if waited <= outKeep {
					t.Fatalf("Read failed with %d bytes waiting, fewer than outKeep (%d)", waited, outKeep)
				}
				return
			}
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				t.Fatalf("Read: %v", err)
			}
			waited = len(lt.Waiting())
			if n == 0 {
				break
			}
		}
	}
	t.Fatalf("a client that reads nothing made %d bytes wait and Read still reads it", waited)
}
