package envoy

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcalsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/fluxgate/fluxgate/controlpoint/server"
)

// load reads an Envoy bootstrap as Envoy does: YAML as the JSON form of
// the proto (unknown fields are errors), every typed_config resolved by
// its type URL, and every message, those inside typed configs too,
// checked by its generated ValidateAll (the protoc-gen-validate rules of
// Envoy's API).
func load(src []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(src)
	if err != nil {
		return nil, err
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, err
	}
	return &b, walk(&b, func(m proto.Message) error {
		if v, ok := m.(interface{ ValidateAll() error }); ok {
			return v.ValidateAll()
		}
		return nil
	})
}

// walk calls f for m and every message inside it, unpacking the Anys.
func walk(m proto.Message, f func(proto.Message) error) error {
	if a, ok := m.(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
		}
		return walk(inner, f)
	}
	if err := f(m); err != nil {
		return err
	}
	var errs []error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		visit := func(v protoreflect.Value) {
			if err := walk(v.Message().Interface(), f); err != nil {
				errs = append(errs, err)
			}
		}
		switch {
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool { visit(v); return true })
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				visit(v.List().Get(i))
			}
		case !fd.IsMap() && !fd.IsList() && fd.Message() != nil:
			visit(v)
		}
		return true
	})
	return errors.Join(errs...)
}

func readExample(t *testing.T) []byte {
	t.Helper()
	src, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestExampleIsValidEnvoyConfig: envoy.yaml is a bootstrap Envoy's schema
// accepts, and it says what the agent needs: ext_authz and the access log
// to the agent's gRPC port, the route's control point and flow-end
// promise, and the flow id logged with a short flush interval.
func TestExampleIsValidEnvoyConfig(t *testing.T) {
	b, err := load(readExample(t))
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}

	clusters := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = true
	}
	var (
		authz     *extauthzv3.ExtAuthz
		perRoute  []*extauthzv3.ExtAuthzPerRoute
		als       []*grpcalsv3.HttpGrpcAccessLogConfig
		refs      []string // clusters the config names
		agentPort uint32
	)
	err = walk(b, func(m proto.Message) error {
		switch m := m.(type) {
		case *extauthzv3.ExtAuthz:
			authz = m
		case *extauthzv3.ExtAuthzPerRoute:
			perRoute = append(perRoute, m)
		case *grpcalsv3.HttpGrpcAccessLogConfig:
			als = append(als, m)
		case *corev3.GrpcService_EnvoyGrpc:
			refs = append(refs, m.GetClusterName())
		case *routev3.RouteAction:
			refs = append(refs, m.GetCluster())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "fluxgate_agent" {
			agentPort = c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
		}
	}
	for _, r := range refs {
		if !clusters[r] {
			t.Errorf("cluster %q is named but not defined", r)
		}
	}
	if agentPort != 8081 {
		t.Errorf("fluxgate_agent cluster port = %d, want the agent's default gRPC port 8081", agentPort)
	}
	if authz.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "fluxgate_agent" || authz.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("ext_authz = %v, want gRPC v3 to fluxgate_agent", authz)
	}
	if len(perRoute) == 0 {
		t.Fatal("no route configures ext_authz")
	}
	for _, p := range perRoute {
		ext := p.GetCheckSettings().GetContextExtensions()
		if ext[server.ContextExtensionControlPoint] == "" || ext[server.ContextExtensionFlowEnd] != "report" {
			t.Errorf("route context extensions = %v, want %s and %s: report", ext, server.ContextExtensionControlPoint, server.ContextExtensionFlowEnd)
		}
	}
	if len(als) != 1 {
		t.Fatalf("%d http_grpc access loggers, want 1", len(als))
	}
	c := als[0].GetCommonConfig()
	if c.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "fluxgate_agent" || c.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("access log to %v, want gRPC v3 to fluxgate_agent", c.GetGrpcService())
	}
	if got := als[0].GetAdditionalRequestHeadersToLog(); len(got) != 1 || !strings.EqualFold(got[0], server.HeaderFlowID) {
		t.Errorf("additional_request_headers_to_log = %v, want [%s]", got, strings.ToLower(server.HeaderFlowID))
	}
	if d := c.GetBufferFlushInterval().AsDuration(); d <= 0 || d > 0.05e9 {
		t.Errorf("buffer_flush_interval = %v, want a short one (the slot stays taken until the entry arrives)", d)
	}
}

// TestExampleCheckCatchesMistakes: the check that passes envoy.yaml fails
// on the mistakes Envoy would refuse: a misspelled field, a type URL
// nobody registered, a value out of range (a generated validation rule),
// also inside a typed_config.
func TestExampleCheckCatchesMistakes(t *testing.T) {
	src := string(readExample(t))
	for _, tc := range []struct{ name, old, new, want string }{
		{"misspelled field", "buffer_flush_interval:", "buffer_flush_intervall:", "buffer_flush_intervall"},
		{"misspelled field in a route", "context_extensions:", "context_extension:", "context_extension"},
		{"unknown type", "grpc.v3.HttpGrpcAccessLogConfig", "grpc.v3.HttpGrpcAccessLogConfg", "HttpGrpcAccessLogConfg"},
		{"port out of range", "port_value: 8081", "port_value: 80810", "PortValue"},
		{"empty log name (rule inside typed_config)", "log_name: fluxgate", `log_name: ""`, "LogName"},
	} {
		if strings.Count(src, tc.old) != 1 {
			t.Fatalf("%s: envoy.yaml has %q %d times, want once", tc.name, tc.old, strings.Count(src, tc.old))
		}
		_, err := load([]byte(strings.Replace(src, tc.old, tc.new, 1)))
		t.Logf("%s: %v", tc.name, err)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}
