package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// upstreamHeader marks every answer of the upstream, so that the driver
// tells them from answers the gateway makes itself.
const upstreamHeader = "X-Upstream"

// upstream is the plant: workers goroutines take requests off one FIFO
// queue and each holds its request for service (a sleep: no CPU), so it
// completes at most workers/service requests a second and queues the
// rest without bound. Like most servers it finishes work whose client has
// left.
type upstream struct {
	addr    string
	workers int
	service time.Duration
	queue   chan chan struct{}
	srv     *http.Server
}

func startUpstream(workers int, service time.Duration) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	// Past the buffer, senders block in the order they came (a channel
	// wakes blocked senders first in, first out): still one FIFO queue.
	u := &upstream{addr: ln.Addr().String(), workers: workers, service: service, queue: make(chan chan struct{}, 1<<16)}
	for range workers {
		go u.work()
	}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *upstream) work() {
	for done := range u.queue {
		time.Sleep(u.service)
		close(done)
	}
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	done := make(chan struct{})
	u.queue <- done
	<-done
	w.Header().Set(upstreamHeader, "1")
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, "ok\n")
}

func (u *upstream) nominal() float64 { return float64(u.workers) / u.service.Seconds() }

// close stops the server; workers may still be asleep on a request, and
// go with the process.
func (u *upstream) close() { _ = u.srv.Close() }

// capacity is what the upstream does alone.
type capacity struct {
	rps      float64       // closed loop, completions per second
	p50, p99 time.Duration // one sequential client
	samples  int           // of the no-load latency
}

// measureCapacity drives addr closed loop with clients concurrent clients
// for d (its throughput is the capacity), then with one client for at
// least a second and 50 requests (its latency is the no-load latency).
func measureCapacity(ctx context.Context, addr string, clients int, d time.Duration) (capacity, error) {
	get, closeIdle := getter(addr, clients)
	defer closeIdle()
	if err := get(); err != nil { // warm a connection up
		return capacity{}, err
	}
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for range clients {
		wg.Go(func() {
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := get(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return capacity{}, fmt.Errorf("capacity measurement: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return capacity{}, err
	}
	res := capacity{rps: float64(done.Load()) / time.Since(start).Seconds()}
	lat, err := sequential(ctx, get)
	if err != nil {
		return capacity{}, fmt.Errorf("no-load latency: %w", err)
	}
	res.p50, res.p99, res.samples = quantile(lat, 0.5), quantile(lat, 0.99), len(lat)
	return res, nil
}

// getter returns a function that GETs / from addr over a pool of up to
// conns connections and wants a 200 from the upstream.
func getter(addr string, conns int) (get func() error, closeIdle func()) {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: conns, NoDefaultUserAgentHeader: true}
	url := "http://" + addr + "/"
	return func() error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(url)
		req.Header.Set(priorityHeader, "high")
		if err := c.DoTimeout(req, resp, 10*time.Second); err != nil {
			return err
		}
		if resp.StatusCode() != http.StatusOK || len(resp.Header.Peek(upstreamHeader)) == 0 {
			return fmt.Errorf("%s answered %d, not from the upstream", addr, resp.StatusCode())
		}
		return nil
	}, c.CloseIdleConnections
}

// sequential calls get one at a time for at least a second and 50 calls
// and returns the latencies, sorted.
func sequential(ctx context.Context, get func() error) ([]time.Duration, error) {
	var lat []time.Duration
	t0 := time.Now()
	for time.Since(t0) < time.Second || len(lat) < 50 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s := time.Now()
		if err := get(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(s))
	}
	slices.Sort(lat)
	return lat, nil
}

// quantile of sorted, nearest rank; 0 when empty.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
