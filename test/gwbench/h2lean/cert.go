package main

import (
	"crypto/tls"
	"time"

	"github.com/fluxgate/fluxgate/internal/benchcert"
)

// selfSignedPEM makes a self-signed ECDSA P-256 certificate for
// 127.0.0.1, ::1 and localhost, valid from an hour ago for a day, as PEM.
func selfSignedPEM() (certPEM, keyPEM []byte, err error) {
	certPEM, keyPEM, _, err = benchcert.PEM("h2lean", time.Now())
	return certPEM, keyPEM, err
}

func selfSigned() (tls.Certificate, error) {
	c, k, err := selfSignedPEM()
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(c, k)
}
