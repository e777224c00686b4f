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
