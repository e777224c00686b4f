package main

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// tlsLabel names what -tls measures, in the printed tables.
const tlsLabel = "TLS (ECDSA P-256, TLS 1.3, keep-alive)"

// errNotTLS13 is returned for a server that negotiated less than TLS 1.3
// with gwbench's client: the tables would then misname what they show.
var errNotTLS13 = errors.New("did not negotiate TLS 1.3")

func checkTLS13(url string, st *tls.ConnectionState) error {
	if st == nil {
		return fmt.Errorf("%s: no TLS", url)
	}
	if st.Version != tls.VersionTLS13 {
		return fmt.Errorf("%s %w (got %s)", url, errNotTLS13, tls.VersionName(st.Version))
	}
	return nil
}
