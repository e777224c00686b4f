package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "github.com/fluxgate/fluxgate/controlpoint/controlpointpb"
)

// judge is a grpc-go FlowControlService that rejects every third call and
// fails every fifth, and records what it was asked.
type judge struct {
	pb.UnimplementedFlowControlServiceServer
	mu       sync.Mutex
	n        int             // guarded by mu
	users    map[string]bool // guarded by mu
	cps      map[string]bool // guarded by mu
	inFlight int             // guarded by mu
	most     int             // guarded by mu
}

func (j *judge) Check(_ context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	j.mu.Lock()
	j.n++
	n := j.n
	j.users[req.GetLabels()["user"]] = true
	j.cps[req.GetControlPoint()] = true
	j.inFlight++
	j.most = max(j.most, j.inFlight)
	j.mu.Unlock()
	time.Sleep(200 * time.Microsecond) // so that calls overlap
	j.mu.Lock()
	j.inFlight--
	j.mu.Unlock()
	switch {
	case n%5 == 0:
		return nil, errors.New("every fifth call fails")
	case n%3 == 0:
		return &pb.CheckResponse{DecisionType: pb.DecisionType_DECISION_TYPE_REJECTED, ControlPoint: req.GetControlPoint()}, nil
	}
	return &pb.CheckResponse{DecisionType: pb.DecisionType_DECISION_TYPE_ACCEPTED, ControlPoint: req.GetControlPoint(),
		LimiterDecisions: []*pb.LimiterDecision{{PolicyName: "p", ComponentId: "0", Remaining: 1e12}}}, nil
}

func serveJudge(t *testing.T, opts ...grpc.ServerOption) (*judge, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	j := &judge{users: map[string]bool{}, cps: map[string]bool{}}
	srv := grpc.NewServer(opts...)
	pb.RegisterFlowControlServiceServer(srv, j)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return j, lis.Addr().String()
}

// TestLeanClientCountsWhatTheServerAnswered: every call the server
// answered is counted once, as good only when it accepted with status
// OK; the users cycle; the server's stream limit is kept.
func TestLeanClientCountsWhatTheServerAnswered(t *testing.T) {
	for _, limit := range []uint32{0, 4} {
		var opts []grpc.ServerOption
		if limit > 0 {
			opts = append(opts, grpc.MaxConcurrentStreams(limit))
		}
		j, addr := serveJudge(t, opts...)
		c, err := dialLean(addr, userRequests("exact", 7))
		if err != nil {
			t.Fatal(err)
		}
		good, failed, err := c.run(20, 300*time.Millisecond)
		c.conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		j.mu.Lock()
		n, users, cps, most := j.n, len(j.users), j.cps, j.most
		j.mu.Unlock()
		wantFailed := int64(0)
		for i := 1; i <= n; i++ {
			if i%5 == 0 || i%3 == 0 {
				wantFailed++
			}
		}
		if n < 20 || good+failed != int64(n) || failed != wantFailed {
			t.Fatalf("limit %d: server answered %d calls; client counted %d good, %d failed; want %d failed", limit, n, good, failed, wantFailed)
		}
		if users != 7 || len(cps) != 1 || !cps["exact"] {
			t.Fatalf("limit %d: the server saw %d users (want 7) at control points %v (want exact)", limit, users, cps)
		}
		if limit > 0 && most > int(limit) {
			t.Fatalf("%d calls in flight at once; the server allows %d", most, limit)
		} else if limit == 0 && most < 2 {
			t.Fatalf("at most %d call in flight: the client kept none in parallel", most)
		}
	}
}

func TestAccepts(t *testing.T) {
	for _, tc := range []struct {
		msg  *pb.CheckResponse
		want bool
	}{
		{&pb.CheckResponse{DecisionType: pb.DecisionType_DECISION_TYPE_ACCEPTED, ControlPoint: "x", RejectReason: pb.RejectReason_REJECT_REASON_NONE}, true},
		{&pb.CheckResponse{DecisionType: pb.DecisionType_DECISION_TYPE_REJECTED, ControlPoint: "x"}, false},
		{&pb.CheckResponse{ControlPoint: "x"}, false},
	} {
		b, err := proto.Marshal(tc.msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := accepts(b); got != tc.want {
			t.Errorf("accepts(%v) = %v, want %v", tc.msg, got, tc.want)
		}
	}
	if accepts([]byte{0x08}) { // a tag without its value
		t.Error("accepts read a cut message as accepted")
	}
}

// TestLeanClientOp: calls shared by goroutines each get their own answer;
// a call past its context gives up and the connection goes on.
func TestLeanClientOp(t *testing.T) {
	j, addr := serveJudge(t)
	l, err := newLeanClient(addr, userRequests("exact", 5))
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for n := range 25 {
				if err := l.op(context.Background(), g, g*25+n); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	j.mu.Lock()
	n, users := j.n, len(j.users)
	j.mu.Unlock()
	want := 0
	for i := 1; i <= n; i++ {
		if i%5 == 0 || i%3 == 0 {
			want++
		}
	}
	if n != 200 || failed != want || users != 5 {
		t.Fatalf("server answered %d calls (want 200) for %d users (want 5); %d failed, want %d", n, users, failed, want)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.op(ctx, 0, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("a call with its context done = %v, want context.Canceled", err)
	}
	for i := range 3 { // the server's 201st call fails, 202nd accepts, 203rd rejects — or the cancelled call never reached it
		_ = l.op(context.Background(), 0, i)
	}
	j.mu.Lock()
	n = j.n
	j.mu.Unlock()
	if n < 203 {
		t.Fatalf("after a cancelled call the server answered %d calls, want at least 203", n)
	}
}
