// Package looptlstest writes TLS 1.3 records as a client would, from the
// client's application traffic secret (logged by tls.Config's
// KeyLogWriter), so that a test can send what crypto/tls's client never
// sends on demand: a KeyUpdate that asks the server for one of its own.
package looptlstest

import (
	"bufio"
	"bytes"
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
	"strings"

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
