package fluxmeter

import (
	"context"
	"net"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	dto "github.com/prometheus/client_model/go"
)

// slowTraces holds every Export until release is closed.
type slowTraces struct {
	collectortrace.UnimplementedTraceServiceServer
	started chan struct{}
	release chan struct{}
}

func (s *slowTraces) Export(ctx context.Context, _ *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	s.started <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// TestExportsInFlightAreBounded: past MaxGRPCExportsInFlight calls in
// flight, an Export is refused at once with Unavailable (and counted);
// slots come back when calls end, answered or cancelled.
func TestExportsInFlightAreBounded(t *testing.T) {
	r, err := NewReceiver(New(Options{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := &slowTraces{started: make(chan struct{}, 64), release: make(chan struct{})}
	srv := grpc.NewServer(grpc.InTapHandle(r.GRPCAdmit))
	collectortrace.RegisterTraceServiceServer(srv, slow)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := collectortrace.NewTraceServiceClient(conn)

	// Fill every slot: half with calls that will be answered, half with
	// calls their clients will cancel.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, MaxGRPCExportsInFlight)
	for i := 0; i < MaxGRPCExportsInFlight; i++ {
		callCtx := context.Background()
		if i%2 == 1 {
			callCtx = ctx
		}
		go func() {
			_, err := c.Export(callCtx, &collectortrace.ExportTraceServiceRequest{})
			done <- err
		}()
		select {
		case <-slow.started:
		case <-time.After(10 * time.Second):
			t.Fatalf("export %d never reached the service", i)
		}
	}
	past, cancelPast := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelPast()
	_, err = c.Export(past, &collectortrace.ExportTraceServiceRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("export past the bound: %v, want Unavailable", err)
	}
	if got := testutilCount(r); got != 1 {
		t.Errorf("fluxgate_otlp_busy_refusals_total{transport=grpc} = %v, want 1", got)
	}

	cancel()
	close(slow.release)
	for i := 0; i < MaxGRPCExportsInFlight; i++ {
		<-done
	}
	// Every slot is back: as many exports as the bound go through at once.
	// (This service is not the receiver's own, which gives its slot back
	// before it answers: here a slot comes back when the stream's context
	// ends, a moment after the client has its answer.)
	for deadline := time.Now().Add(5 * time.Second); len(r.gate.slots) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the calls ended, %d slots are still taken (leaked)", len(r.gate.slots))
		}
	}
	slow.release = make(chan struct{})
	for i := 0; i < MaxGRPCExportsInFlight; i++ {
		go func() {
			_, err := c.Export(context.Background(), &collectortrace.ExportTraceServiceRequest{})
			done <- err
		}()
	}
	deadline := time.After(10 * time.Second)
	for i := 0; i < MaxGRPCExportsInFlight; i++ {
		select {
		case <-slow.started:
		case err := <-done:
			t.Fatalf("after the calls ended, export %d was refused: %v (a slot leaked)", i, err)
		case <-deadline:
			t.Fatal("after the calls ended, not every slot came back")
		}
	}
	close(slow.release)
}

func testutilCount(r *Receiver) float64 {
	m := &dtoMetric{}
	_ = r.busy.WithLabelValues("grpc").Write(&m.Metric)
	return m.GetCounter().GetValue()
}

type dtoMetric struct{ dto.Metric }

// TestExportSlotLifetime: an admitted export's slot comes back when its
// stream's context ends, unless the export handler holds it: then when
// the handler returns, even if the client cancelled in between (the
// message is in memory until the handler returns).
func TestExportSlotLifetime(t *testing.T) {
	r, err := NewReceiver(New(Options{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	admit := func() (context.Context, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		ctx, err := r.GRPCAdmit(ctx, &tap.Info{FullMethodName: exportMethod})
		if err != nil {
			t.Fatal(err)
		}
		return ctx, cancel
	}
	inFlight := func() int { return len(r.gate.slots) }
	// context.AfterFunc runs in a goroutine of its own: wait for it.
	eventually := func(want int, what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); inFlight() != want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d slots taken, want %d", what, inFlight(), want)
			}
		}
	}

	ctx, cancel := admit()
	if inFlight() != 1 {
		t.Fatalf("admitted: %d slots taken, want 1", inFlight())
	}
	cancel()
	eventually(0, "stream ended before the handler")
	holdSlot(ctx)() // a handler that starts after that holds nothing
	if inFlight() != 0 {
		t.Fatalf("handler after the stream ended: %d slots taken, want 0", inFlight())
	}

	ctx, cancel = admit()
	release := holdSlot(ctx)
	cancel() // the client gives up while the handler runs
	time.Sleep(20 * time.Millisecond)
	if inFlight() != 1 {
		t.Fatalf("handler running after the client cancelled: %d slots taken, want 1", inFlight())
	}
	release()
	if inFlight() != 0 {
		t.Fatalf("handler returned: %d slots taken, want 0", inFlight())
	}
	if other, err := r.GRPCAdmit(context.Background(), &tap.Info{FullMethodName: "/fluxgate.flowcontrol.v1.FlowControlService/Check"}); err != nil || other.Value(gateSlotKey{}) != nil || inFlight() != 0 {
		t.Fatalf("a check call took a slot or was refused: %v", err)
	}
}
