// Package looptlstest writes TLS 1.3 records as a client would, from the
// client's application traffic secret (logged by tls.Config's
// KeyLogWriter), so that a test can send what crypto/tls's client never
// sends on demand: a KeyUpdate that asks the server for one of its own.
package looptlstest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Records seals a TLS 1.3 client's records after its handshake. It is not
// safe for concurrent use, and the tls.Conn it was made from must write
// nothing more (the sequence numbers are Records' now).
type Records struct {
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
	keyLen int
	secret []byte
	sealer cipher.AEAD
	iv     []byte
	seq    uint64
}

// New returns the Records of tc, a handshaken TLS 1.3 client whose
// config's KeyLogWriter wrote keylog.
func New(tc *tls.Conn, keylog []byte) (*Records, error) {
	st := tc.ConnectionState()
	if st.Version != tls.VersionTLS13 {
		return nil, errors.New("looptlstest: not TLS 1.3")
	}
	r := &Records{}
	switch st.CipherSuite {
	case tls.TLS_AES_128_GCM_SHA256:
		r.hash, r.aead, r.keyLen = sha256.New, gcm, 16
	case tls.TLS_AES_256_GCM_SHA384:
		r.hash, r.aead, r.keyLen = sha512.New384, gcm, 32
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		r.hash, r.aead, r.keyLen = sha256.New, chacha20poly1305.New, chacha20poly1305.KeySize
	default:
		return nil, fmt.Errorf("looptlstest: cipher suite %s", tls.CipherSuiteName(st.CipherSuite))
	}
	sc := bufio.NewScanner(bytes.NewReader(keylog))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "CLIENT_TRAFFIC_SECRET_0" {
			s, err := hex.DecodeString(f[2])
			if err != nil {
				return nil, err
			}
			if err := r.setSecret(s); err != nil {
				return nil, err
			}
			return r, nil
		}
	}
	return nil, errors.New("looptlstest: no CLIENT_TRAFFIC_SECRET_0 in the key log")
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// expandLabel is RFC 8446's HKDF-Expand-Label with an empty context.
func (r *Records) expandLabel(secret []byte, label string, n int) ([]byte, error) {
	full := "tls13 " + label
	info := []byte{byte(n >> 8), byte(n), byte(len(full))}
	info = append(info, full...)
	info = append(info, 0)
	return hkdf.Expand(r.hash, secret, string(info), n)
}

func (r *Records) setSecret(s []byte) error {
	key, err := r.expandLabel(s, "key", r.keyLen)
	if err != nil {
		return err
	}
	iv, err := r.expandLabel(s, "iv", 12)
	if err != nil {
		return err
	}
	sealer, err := r.aead(key)
	if err != nil {
		return err
	}
	r.secret, r.sealer, r.iv, r.seq = s, sealer, iv, 0
	return nil
}

// seal is one record of content type typ.
func (r *Records) seal(typ byte, content []byte) []byte {
	inner := append(append([]byte(nil), content...), typ)
	hdr := []byte{23, 3, 3, 0, 0} // application_data, TLS 1.2 on the wire
	binary.BigEndian.PutUint16(hdr[3:], uint16(len(inner)+r.sealer.Overhead()))
	nonce := append([]byte(nil), r.iv...)
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], r.seq)
	for i := range 8 {
		nonce[4+i] ^= seq[i]
	}
	r.seq++
	return r.sealer.Seal(hdr, nonce, inner, hdr)
}

// Data is an application_data record of p.
func (r *Records) Data(p []byte) []byte { return r.seal(23, p) }

// KeyUpdate is a KeyUpdate record asking the server for one of its own
// (update_requested); the client's keys move on after it.
func (r *Records) KeyUpdate() ([]byte, error) {
	b := r.seal(22, []byte{24, 0, 0, 1, 1})
	next, err := r.expandLabel(r.secret, "traffic upd", r.hash().Size())
	if err != nil {
		return nil, err
	}
	return b, r.setSecret(next)
}

// Dial connects to addr over TCP, its receive buffer small (4 KiB: a
// client that reads nothing takes little), and completes a TLS 1.3
// handshake with cfg (ALPN as cfg says); it returns the TCP connection,
// which the test writes Records' records to from then on, and the
// Records.
func Dial(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, *Records, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4 << 10)
	}
	var keylog bytes.Buffer
	cfg = cfg.Clone()
	cfg.MinVersion, cfg.KeyLogWriter = tls.VersionTLS13, &keylog
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	r, err := New(tc, keylog.Bytes())
	if err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	return nc, r, nil
}

// Flood writes KeyUpdates to nc as r, each run of 15 followed by a
// record of data (crypto/tls ends a connection after 16 records in a row
// that carry none), reading nothing: 64 KiB at a time, each write with a
// 10 s deadline, 16 MiB at most. It returns the first write's error: nil
// when all of it went (the server kept reading and answering into
// nowhere), os.ErrDeadlineExceeded when the server stopped reading and
// did not close the connection, another error when it closed it.
func Flood(nc net.Conn, r *Records, data []byte) error {
	var batch []byte
	for range 40_000 {
		for range 15 {
			ku, err := r.KeyUpdate()
			if err != nil {
				return err
			}
			batch = append(batch, ku...)
		}
		batch = append(batch, r.Data(data)...)
		if len(batch) < 64<<10 {
			continue
		}
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(batch); err != nil {
			return err
		}
		batch = batch[:0]
	}
	return nil
}
