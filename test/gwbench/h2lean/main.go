// Command h2lean is a measurement spike (issue 20, item 5): a minimal
// HTTP/2-over-TLS server of its own, to learn how cheap a Go server can
// serve a proxied request to HTTP/2 clients, against Go's net/http HTTP/2
// server and nginx. It is not a product: see BENCHMARKS.md, "An HTTP/2
// server of our own, measured".
//
// One goroutine a connection reads its frames (golang.org/x/net/http2's
// Framer, HEADERS and CONTINUATION decoded with hpack); a request's
// handler writes its HEADERS and DATA under the connection's write lock,
// flushed once, with no goroutine a flush. A request is served on the
// reader goroutine itself when it is the connection's only one running and
// nothing more is buffered (-streams inline, the default), otherwise on a
// goroutine of its own (always, with -streams goroutine). Inline costs
// head-of-line blocking: while its handler waits for the upstream, the
// connection's other streams are not read (TestConcurrentStreams, whose ten
// requests wait for one another at the upstream, times out inline); the
// goroutine a stream cost no measurable CPU against it (BENCHMARKS.md).
//
//	h2lean -listen 127.0.0.1:8443 -mode static            # 200, 100 bytes
//	h2lean -listen 127.0.0.1:8443 -mode proxy -upstream 127.0.0.1:8080
//	h2lean -listen … -mode netstatic | netproxy -upstream …  # net/http's HTTP/2 server, the controls
//	go run ./test/gwbench/h2lean -bench -reps 3 -duration 3s # the interleaved comparison
//
// Without -cert and -key it serves a self-signed certificate made at
// start. It handles SETTINGS (and their ACK), PING, WINDOW_UPDATE (send
// windows of the connection and each stream; a 1 MiB receive window that
// request bodies must fit in), HEADERS with CONTINUATION, DATA, RST_STREAM,
// GOAWAY; priorities are ignored.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http2/hpack"
)

var (
	listen   = flag.String("listen", "127.0.0.1:8443", "address to serve HTTP/2 over TLS on")
	mode     = flag.String("mode", "static", "static (a fixed 100-byte 200), proxy (to -upstream over HTTP/1.1), netstatic or netproxy (the same on net/http's HTTP/2 server)")
	upAddr   = flag.String("upstream", "", "the upstream's host:port, for proxy and netproxy")
	poolSize = flag.Int("pool", 256, "idle keep-alive upstream connections kept (proxy and netproxy; nginx -bench keeps 128 a worker, 2 workers here)")
	streams  = flag.String("streams", "inline", "inline (serve on the reader goroutine when a request is alone) or goroutine (a goroutine a stream)")
	certFile = flag.String("cert", "", "PEM certificate; empty: self-signed")
	keyFile  = flag.String("key", "", "PEM key, with -cert")
	cpuProf  = flag.String("cpuprofile", "", "write a CPU profile here until SIGTERM")
	bench    = flag.Bool("bench", false, "run the interleaved comparison (h2load, nginx) instead of serving")
)

// staticBody is the static modes' answer: 100 bytes.
var staticBody = []byte(strings.Repeat("0123456789", 9) + "012345678\n")

var staticHeader = []hpack.HeaderField{{Name: "content-type", Value: "text/plain"}}

func serveStatic(*request) *response {
	return &response{status: 200, header: staticHeader, body: staticBody}
}

func main() {
	flag.Parse()
	if *bench {
		if err := runBench(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		go func() {
			<-sig
			pprof.StopCPUProfile()
			_ = f.Close()
			os.Exit(0)
		}()
	}
	cert, err := loadCert(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(serve(ln, *mode, *upAddr, *streams == "inline", cert))
}

func loadCert(certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" {
		return selfSigned()
	}
	return tls.LoadX509KeyPair(certFile, keyFile)
}

// serve serves ln in mode until ln is closed.
func serve(ln net.Listener, mode, upstreamAddr string, inline bool, cert tls.Certificate) error {
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
	switch mode {
	case "static":
		return serveLean(ln, conf, serveStatic, inline)
	case "proxy":
		if upstreamAddr == "" {
			return errors.New("h2lean: -mode proxy needs -upstream")
		}
		return serveLean(ln, conf, newUpstream(upstreamAddr, *poolSize).serve, inline)
	case "netstatic", "netproxy":
		return serveNet(ln, conf, mode, upstreamAddr)
	}
	return errors.New("h2lean: unknown -mode " + mode)
}

// serveLean accepts TLS connections that negotiate h2 and serves each on
// a goroutine of its own.
func serveLean(ln net.Listener, conf *tls.Config, h handler, inline bool) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			tc := tls.Server(nc, conf)
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
				_ = tc.Close() // no h2, no service: this server speaks nothing else
				return
			}
			_ = tc.SetDeadline(time.Time{})
			_ = newConn(tc, h, inline).serve()
		}()
	}
}

// serveNet is the control: net/http's HTTP/2 server with a trivial
// handler (netstatic) or httputil.ReverseProxy (netproxy).
func serveNet(ln net.Listener, conf *tls.Config, mode, upstreamAddr string) error {
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write(staticBody)
	})
	if mode == "netproxy" {
		target := &url.URL{Scheme: "http", Host: upstreamAddr}
		h = &httputil.ReverseProxy{
			Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
			Transport: &http.Transport{MaxIdleConnsPerHost: *poolSize, DisableCompression: true},
			ErrorLog:  log.New(io.Discard, "", 0),
		}
	}
	srv := &http.Server{Handler: h, TLSConfig: conf, ReadHeaderTimeout: 10 * time.Second}
	err := srv.ServeTLS(ln, "", "")
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
