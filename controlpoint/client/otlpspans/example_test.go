package otlpspans_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"

	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/controlpoint/client"
	"github.com/fluxgate/fluxgate/controlpoint/client/otlpspans"
	"github.com/fluxgate/fluxgate/controlpoint/flow"
)

// receiver stands in for an agent's OTLP receiver: it prints the spans it
// gets. The real one turns them into Flux Meter observations.
type receiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu sync.Mutex // guards printing
}

func (r *receiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				attrs := map[string]any{}
				for _, kv := range s.GetAttributes() {
					switch v := kv.GetValue().GetValue().(type) {
					case *commonpb.AnyValue_StringValue:
						attrs[kv.GetKey()] = v.StringValue
					case *commonpb.AnyValue_IntValue:
						attrs[kv.GetKey()] = v.IntValue
					}
				}
				fmt.Println(s.GetName(), attrs[flow.AttrControlPoint], attrs[flow.AttrDecisionType], attrs[flow.AttrHTTPStatus])
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// Middleware records a span per checked request on the Emitter's tracer;
// the Emitter sends them to the agent's OTLP port (4317 by default).
func ExampleNew() {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, &receiver{})
	go func() { _ = srv.Serve(lis) }() // returns when srv stops
	defer srv.Stop()

	ctx := context.Background()
	spans, err := otlpspans.New(ctx, otlpspans.Options{Endpoint: lis.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	e, err := controlpoint.New(controlpoint.Options{}) // no policies: every flow is accepted
	if err != nil {
		log.Fatal(err)
	}
	h := client.Middleware(controlpoint.NewLocalChecker(e), client.MiddlewareOptions{Tracer: spans.Tracer()})(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/orders", nil))

	// Close exports what is queued.
	if err := spans.Close(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// POST /orders ingress DECISION_TYPE_ACCEPTED 201
}
