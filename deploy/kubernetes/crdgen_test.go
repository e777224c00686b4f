package kubernetes

import (
	"reflect"
	"sort"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fluxgate/fluxgate/policies"
)

// The CRDs' OpenAPI v3 schemas are generated here by reflection over the
// policy types and their yaml tags, so that what Kubernetes accepts and
// what the agent decodes cannot drift apart: TestCRDsGenerated fails when
// crd-*.yaml differ from this output.

// durationPattern is what time.ParseDuration accepts without a sign; the
// policy decoder refuses negative durations.
const durationPattern = `^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

var (
	durationType  = reflect.TypeFor[time.Duration]()
	componentType = reflect.TypeFor[policies.Component]()
)

// crd is one generated CustomResourceDefinition.
type crd struct {
	file     string
	kind     string
	plural   string
	short    []string
	specType reflect.Type
	doc      string
}

var crds = []crd{
	{
		file: "crd-policy.yaml", kind: policies.KindPolicy, plural: "policies", short: []string{"fgpol"},
		specType: reflect.TypeFor[policies.PolicySpec](),
		doc:      "A FluxGate flow-control policy: flux meters, classifiers and a circuit of signal components (fluxgate.io/v1beta1 Policy, as in policy files).",
	},
	{
		file: "crd-trafficpolicy.yaml", kind: policies.KindTrafficPolicy, plural: "trafficpolicies", short: []string{"fgtp"},
		specType: reflect.TypeFor[policies.TrafficPolicySpec](),
		doc:      "The traffic policy of one workload: load balancing, rate limit and canary (fluxgate.io/v1beta1 TrafficPolicy, as in policy files).",
	},
}

// generateCRD returns c's CustomResourceDefinition as YAML.
func generateCRD(c crd) ([]byte, error) {
	group, version, _ := strings.Cut(policies.APIVersion, "/")
	spec := schemaOf(c.specType, map[reflect.Type]bool{})
	spec.Description = c.doc
	obj := apiextensionsv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   c.plural + "." + group,
			Labels: map[string]string{"app.kubernetes.io/name": "fluxgate"},
			Annotations: map[string]string{
				"fluxgate.io/generated-by": "go test ./deploy/kubernetes -run TestCRDsGenerated -update",
			},
		},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Kind:       c.kind,
				ListKind:   c.kind + "List",
				Plural:     c.plural,
				Singular:   strings.ToLower(c.kind),
				ShortNames: c.short,
				Categories: []string{"fluxgate"},
			},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name:    version,
				Served:  true,
				Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:        "object",
					Description: c.doc,
					Required:    []string{"spec"},
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"apiVersion": {Type: "string"},
						"kind":       {Type: "string"},
						"metadata":   {Type: "object"},
						"spec":       spec,
						"status":     statusSchema,
					},
				}},
				// The agents write status (package kube, StatusReporter)
				// without touching spec or generation.
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				AdditionalPrinterColumns: []apiextensionsv1.CustomResourceColumnDefinition{
					{Name: "Accepted", Type: "string", JSONPath: `.status.conditions[?(@.type=="Accepted")].status`},
					{Name: "Programmed", Type: "string", JSONPath: `.status.conditions[?(@.type=="Programmed")].status`},
					{Name: "Agents", Type: "integer", JSONPath: ".status.agents.programmed"},
					{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"},
				},
			}},
		},
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return nil, err
	}
	// Drop the status the API types always marshal: it is the server's.
	if i := strings.Index(string(b), "\nstatus:"); i >= 0 {
		b = b[:i+1]
	}
	return append([]byte("# Generated from the Go types of package policies; do not edit.\n"), b...), nil
}

// statusSchema is what the agents write into status (package kube,
// StatusReporter): conditions in the shape of metav1.Condition.
var statusSchema = apiextensionsv1.JSONSchemaProps{
	Type:        "object",
	Description: "Written by one agent of the agent group (the holder of the Lease fluxgate-<agent_group>).",
	Properties: map[string]apiextensionsv1.JSONSchemaProps{
		"observedGeneration": {Type: "integer", Format: "int64", Description: "The metadata.generation the conditions describe."},
		"conditions": {
			Type: "array", Description: "Accepted (the spec is valid and not shadowed; when False the message holds the positioned errors) and Programmed (the agents serve it).",
			XListType: ptr("map"), XListMapKeys: []string{"type"},
			Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
				Type:     "object",
				Required: []string{"type", "status", "reason", "message", "lastTransitionTime"},
				Properties: map[string]apiextensionsv1.JSONSchemaProps{
					"type":               {Type: "string"},
					"status":             {Type: "string", Enum: []apiextensionsv1.JSON{{Raw: []byte(`"True"`)}, {Raw: []byte(`"False"`)}, {Raw: []byte(`"Unknown"`)}}},
					"reason":             {Type: "string"},
					"message":            {Type: "string", MaxLength: ptr(int64(32768))},
					"observedGeneration": {Type: "integer", Format: "int64"},
					"lastTransitionTime": {Type: "string", Format: "date-time"},
				},
			}},
		},
		"agents": {
			Type:        "object",
			Description: "Agents of the group whose Lease is live (total) and that program this generation (programmed).",
			Properties: map[string]apiextensionsv1.JSONSchemaProps{
				"total":      {Type: "integer", Format: "int32"},
				"programmed": {Type: "integer", Format: "int32"},
			},
		},
	},
}

func ptr[T any](v T) *T { return &v }

// schemaOf returns the structural schema of values of type t as the
// policy decoder reads them. inPath holds the struct types being expanded,
// so that a recursive type (a label-matcher expression) becomes an object
// of unchecked fields at the second level.
func schemaOf(t reflect.Type, inPath map[reflect.Type]bool) apiextensionsv1.JSONSchemaProps {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	preserve := true
	switch t {
	case durationType:
		return apiextensionsv1.JSONSchemaProps{Type: "string", Pattern: durationPattern,
			Description: "A duration such as 100ms, 1m30s or 2h."}
	case componentType:
		return apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve,
			Description: "A circuit component: a mapping with one key, the component kind (such as ema, or flow_control: {rate_limiter: ...}), holding its spec. Checked by the agent."}
	}
	switch t.Kind() {
	case reflect.String:
		return apiextensionsv1.JSONSchemaProps{Type: "string"}
	case reflect.Bool:
		return apiextensionsv1.JSONSchemaProps{Type: "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return apiextensionsv1.JSONSchemaProps{Type: "integer"}
	case reflect.Float32, reflect.Float64:
		return apiextensionsv1.JSONSchemaProps{Type: "number"}
	case reflect.Slice, reflect.Array:
		items := schemaOf(t.Elem(), inPath)
		return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &items}}
	case reflect.Map:
		v := schemaOf(t.Elem(), inPath)
		return apiextensionsv1.JSONSchemaProps{Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Allows: true, Schema: &v}}
	case reflect.Struct:
		if inPath[t] {
			return apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: &preserve}
		}
		inPath[t] = true
		defer delete(inPath, t)
		s := apiextensionsv1.JSONSchemaProps{Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{}}
		addFields(&s, t, inPath)
		if len(s.Properties) == 0 {
			s.Properties = nil
		}
		sort.Strings(s.Required)
		return s
	}
	// interface{} and anything else: any shape, checked by the agent.
	return apiextensionsv1.JSONSchemaProps{XPreserveUnknownFields: &preserve}
}

// addFields adds the yaml fields of struct t to s, inlined structs
// included.
func addFields(s *apiextensionsv1.JSONSchemaProps, t reflect.Type, inPath map[reflect.Type]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			addFields(s, ft, inPath)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		s.Properties[name] = schemaOf(f.Type, inPath)
		if f.Tag.Get("required") == "true" {
			s.Required = append(s.Required, name)
		}
	}
}
