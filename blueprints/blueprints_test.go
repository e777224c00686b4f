package blueprints

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// generateExample generates b from its own example values.
func generateExample(t *testing.T, b *Blueprint) *Output {
	t.Helper()
	out, err := b.Generate(b.Name+".values.yaml", b.Values())
	if err != nil {
		t.Fatalf("%s: generate from the example values: %v", b.Name, err)
	}
	return out
}

func TestBlueprintsList(t *testing.T) {
	var names []string
	for _, b := range List() {
		names = append(names, b.Name)
	}
	want := "availability-slo canary-rollout latency-slo rate-limiting service-protection"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("List() = %s, want %s", got, want)
	}
	if _, err := Lookup("blue-green"); err == nil || !strings.Contains(err.Error(), "have availability-slo, canary-rollout") {
		t.Errorf("Lookup of an unknown name: %v", err)
	}
}

// TestGolden generates every blueprint from its example values and
// compares every file with testdata/NAME/. Run with -update to rewrite.
func TestGolden(t *testing.T) {
	for _, b := range List() {
		t.Run(b.Name, func(t *testing.T) {
			out := generateExample(t, b)
			dir := filepath.Join("testdata", b.Name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := out.WriteDir(dir); err != nil {
					t.Fatal(err)
				}
				return
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatalf("%v (run go test ./blueprints -update)", err)
			}
			if len(entries) != len(out.Files) {
				t.Errorf("%s holds %d files, generate writes %d", dir, len(entries), len(out.Files))
			}
			for _, f := range out.Files {
				want, err := os.ReadFile(filepath.Join(dir, f.Name))
				if err != nil {
					t.Errorf("%v (run go test ./blueprints -update)", err)
					continue
				}
				if !bytes.Equal(f.Data, want) {
					t.Errorf("%s differs from the golden file (run go test ./blueprints -update and review the diff):\n%s", f.Name, f.Data)
				}
			}
		})
	}
}

// TestGeneratedPolicyValidates checks the written policy file again from
// scratch, as `fluxgate policy validate` would read it.
func TestGeneratedPolicyValidates(t *testing.T) {
	for _, b := range List() {
		out := generateExample(t, b)
		name := out.Policy.Metadata.Name + ".yaml"
		for _, f := range out.Files {
			if f.Name != name {
				continue
			}
			if _, err := check(f.Name, f.Data); err != nil {
				t.Errorf("%s: %v", b.Name, err)
			}
		}
	}
}

// TestValuesDocumentEveryParameter checks that each example values file
// has a "# key (type, ...)" comment for every parameter of the values type
// and decodes to exactly what the file says: nothing silently dropped.
func TestValuesDocumentEveryParameter(t *testing.T) {
	types := map[string]any{
		"rate-limiting":      rateLimiting{},
		"service-protection": serviceProtection{},
		"latency-slo":        latencySLO{},
		"availability-slo":   availabilitySLO{},
		"canary-rollout":     canaryRollout{},
	}
	for _, b := range List() {
		typ, ok := types[b.Name]
		if !ok {
			t.Errorf("%s: add its values type to this test", b.Name)
			continue
		}
		text := string(b.Values())
		for _, key := range yamlKeys(reflect.TypeOf(typ)) {
			if !regexp.MustCompile(`(?m)^\s*# ` + regexp.QuoteMeta(key) + `( \(|:)`).MatchString(text) {
				t.Errorf("%s: values file does not document %q", b.Name, key)
			}
			if !regexp.MustCompile(`(?m)^\s*(- )?` + regexp.QuoteMeta(key) + `:`).MatchString(text) {
				t.Errorf("%s: values file does not set %q", b.Name, key)
			}
		}
	}
}

// yamlKeys lists the yaml keys of a values type, descending into structs
// the blueprints define (not into policy-language types).
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		local := ft.Kind() == reflect.Struct && ft.PkgPath() == reflect.TypeFor[rateLimiting]().PkgPath() && ft.Name() != "promDuration"
		if len(tag) > 1 && tag[1] == "inline" {
			keys = append(keys, yamlKeys(ft)...)
			continue
		}
		keys = append(keys, tag[0])
		if local {
			keys = append(keys, yamlKeys(ft)...)
		}
	}
	return keys
}

// TestValuesRoundTrip decodes each example values file, encodes the result
// and decodes that again: the two must be equal, and generate the same
// files.
func TestValuesRoundTrip(t *testing.T) {
	for _, b := range List() {
		s, err := b.decode("values.yaml", b.Values())
		if err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
		again, err := b.decode("again.yaml", encodeValues(t, s))
		if err != nil {
			t.Fatalf("%s: re-encoded values: %v\n%s", b.Name, err, encodeValues(t, s))
		}
		if !reflect.DeepEqual(s, again) {
			t.Errorf("%s: values changed in a round trip:\n%#v\n%#v", b.Name, s, again)
		}
		out1, err1 := b.Generate("values.yaml", b.Values())
		out2, err2 := b.Generate("again.yaml", encodeValues(t, s))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v, %v", b.Name, err1, err2)
		}
		if !reflect.DeepEqual(out1.Files, out2.Files) {
			t.Errorf("%s: re-encoded values generate other files", b.Name)
		}
	}
}

func TestBadValues(t *testing.T) {
	for _, tc := range []struct {
		blueprint, values string
		want              []string
	}{
		{"rate-limiting", "policy_name: x\nselectors: [{control_point: ingress}]\nfill_amount: 1\nbucket_capacity: 1\nbogus: 1\n",
			[]string{`values.yaml:5:1: unknown field "bogus"`}},
		{"rate-limiting", "policy_name: x\nselectors: [{control_point: ingress}]\nfill_amount: lots\nbucket_capacity: 1\n",
			[]string{`values.yaml:3:14: `}},
		{"rate-limiting", "policy_name: Bad_Name\nfill_amount: 0\nbucket_capacity: 1\nbackend: memcached\n",
			[]string{`values.yaml:1:1: selectors: at least one selector is required`, `values.yaml:1:14: policy_name "Bad_Name": must be lowercase`,
				`values.yaml:2:14: fill_amount must be positive, got 0`, `values.yaml:4:10: backend "memcached" is not one of local, redis`}},
		{"rate-limiting", "policy_name: x\nselectors: [{control_point: ingress}]\nfill_amount: 1\ndynamic_fill: {enabled: true, max: 10}\n",
			[]string{`values.yaml:4:15: dynamic_fill.query_string is required when dynamic_fill.enabled is true`}},
		{"service-protection", "policy_name: x\nselectors: [{control_point: ingress}]\nflux_meter_name: m\nsetpoint_factor: 0.9\nworkloads: [{name: a, priority: 300}]\n",
			[]string{`values.yaml:4:18: setpoint_factor must be at least 1`, `values.yaml:5:13: workload "a": label_matcher is required`, `values.yaml:5:33: priority must be within 0..255, got 300`}},
		{"latency-slo", "policy_name: s\nobjective: 99.5\nthreshold_ms: 300\nflux_meter: {name: m, selectors: [{control_point: ingress}], buckets: [100, 250, 500]}\nrunbook_url: https://r\n",
			[]string{`values.yaml:3:15: threshold_ms 300 is not a bucket boundary of the flux meter; the SLI counts the flows in the bucket le="300", so the threshold must be one of flux_meter.buckets: 100, 250, 500`}},
		{"latency-slo", "policy_name: s\nobjective: 100\nwindow: 1d\nthreshold_ms: 250\nflux_meter: {name: m, selectors: [{control_point: ingress}]}\nrunbook_url: r\n",
			[]string{`values.yaml:2:12: objective is the percentage of good flows`, `values.yaml:3:9: window must be at least 3d`, `values.yaml:6:14: runbook_url must be an http(s) URL`}},
		{"availability-slo", "policy_name: s\nobjective: 99\nthreshold_ms: 250\nwindow: 4 weeks\n",
			[]string{`values.yaml:3:1: unknown field "threshold_ms"`, `values.yaml:4:9: invalid duration "4 weeks"`}},
		{"availability-slo", "policy_name: s\nobjective: 90\nflux_meter: {name: m, selectors: [{control_point: ingress}]}\nrunbook_url: https://r\n",
			[]string{`values.yaml:2:12: objective 90% leaves an error budget of 10%`}},
		{"canary-rollout", "policy_name: c\nroute_id: r\nsteps: [10, 5]\nrollback: {enabled: true}\n",
			[]string{`values.yaml:4:1: unknown field "rollback"`}},
		{"canary-rollout", "policy_name: c\nsteps: [10, 5]\nstep_interval: 2s\nanalysis: {interval: 3s, window: 2s, min_samples: 0, max_error_rate: 1, max_latency_ratio: 0.5}\n",
			[]string{`values.yaml:1:1: route_id is required`, `values.yaml:2:13: steps must be percentages within (0, 100], strictly increasing; step 1 is 5`,
				`values.yaml:3:16: step_interval must be at least analysis.interval (3s), so that every step is analysed, got 2s`,
				`values.yaml:4:34: analysis.window must be at least analysis.interval (3s)`, `values.yaml:4:51: analysis.min_samples must be at least 1, got 0`,
				`values.yaml:4:70: analysis.max_error_rate must be within [0, 1), got 1`, `values.yaml:4:92: analysis.max_latency_ratio is the canary's mean latency over the primary's: 0 (not judged) or at least 1, got 0.5`}},
		{"canary-rollout", "policy_name: c\nroute_id: r\nevaluation_interval: 2s\nanalysis: {interval: 1s}\n",
			[]string{`values.yaml:4:22: analysis.interval must be at least evaluation_interval (2s), got 1s`}},
	} {
		b, err := Lookup(tc.blueprint)
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Generate("values.yaml", []byte(tc.values))
		var list strictyaml.ErrorList
		if !errors.As(err, &list) {
			t.Errorf("%s %q: err = %v, want a strictyaml.ErrorList", tc.blueprint, tc.values, err)
			continue
		}
		if len(list) != len(tc.want) {
			t.Errorf("%s %q: %d errors, want %d:\n%v", tc.blueprint, tc.values, len(list), len(tc.want), err)
			continue
		}
		for i, e := range list {
			if !strings.HasPrefix(e.Error(), tc.want[i]) {
				t.Errorf("%s: error %d = %q, want prefix %q", tc.blueprint, i, e.Error(), tc.want[i])
			}
		}
	}
}

// TestCanaryRolloutLatency: with max_latency_ratio the analysis also
// reads the canary's mean latency over the primary's, and a latency breach
// rolls back as an error breach does; analysis.for delays both.
func TestCanaryRolloutLatency(t *testing.T) {
	b, _ := Lookup("canary-rollout")
	out, err := b.Generate("values.yaml", []byte("policy_name: c\nroute_id: r\nanalysis: {max_latency_ratio: 1.5, for: 10s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	src := string(fileOf(t, out, "c.yaml"))
	for _, want := range []string{
		`fluxgate_canary_request_duration_seconds_sum{route_id=\"r\",group=\"canary\"}[30s]`,
		`fluxgate_canary_request_duration_seconds_count{route_id=\"r\",group=\"primary\"}[30s]`,
		"signal_name: LATENCY_RATIO", "{signal_name: LATENCY_BREACH}, {signal_name: GATEWAY_FAIL}", "true_for: 10s",
	} {
		if !strings.Contains(src, want) {
			t.Errorf("generated policy lacks %q:\n%s", want, src)
		}
	}
}

// TestBadSelectorReportsThePolicy: a selector the blueprint passes through
// unchecked is refused by the policy checks, quoting the generated file.
func TestBadSelectorReportsThePolicy(t *testing.T) {
	b, _ := Lookup("rate-limiting")
	_, err := b.Generate("values.yaml", []byte("policy_name: x\nselectors: [{control_point: ingress, label_matcher: {match_list: [{key: a, operator: Maybe}]}}]\nfill_amount: 1\nbucket_capacity: 1\n"))
	if err == nil || !strings.Contains(err.Error(), "the policy generated from values.yaml is invalid") || !strings.Contains(err.Error(), "x.yaml:") {
		t.Errorf("err = %v", err)
	}
}

// TestDashboards checks each dashboard is Grafana JSON with a datasource
// variable and queries that parse, one per signal and flux meter.
func TestDashboards(t *testing.T) {
	p := parser.NewParser(parser.Options{})
	for _, b := range List() {
		out := generateExample(t, b)
		var dash struct {
			UID           string `json:"uid"`
			SchemaVersion int    `json:"schemaVersion"`
			Templating    struct {
				List []struct{ Name, Type, Query string } `json:"list"`
			} `json:"templating"`
			Panels []struct {
				Type       string                  `json:"type"`
				Datasource struct{ UID string }    `json:"datasource"`
				Targets    []struct{ Expr string } `json:"targets"`
			} `json:"panels"`
		}
		data := fileOf(t, out, ".dashboard.json")
		if err := json.Unmarshal(data, &dash); err != nil {
			t.Fatalf("%s: %v", b.Name, err)
		}
		if dash.SchemaVersion == 0 || dash.UID == "" || len(dash.Templating.List) != 1 || dash.Templating.List[0].Type != "datasource" {
			t.Errorf("%s: schemaVersion %d, uid %q, templating %+v", b.Name, dash.SchemaVersion, dash.UID, dash.Templating.List)
		}
		var exprs []string
		for _, pn := range dash.Panels {
			if pn.Type != "row" && pn.Datasource.UID != "${datasource}" {
				t.Errorf("%s: panel datasource %q", b.Name, pn.Datasource.UID)
			}
			for _, tg := range pn.Targets {
				expr := strings.ReplaceAll(tg.Expr, "$__rate_interval", "1m")
				if _, err := p.ParseExpr(expr); err != nil {
					t.Errorf("%s: %q: %v", b.Name, tg.Expr, err)
				}
				exprs = append(exprs, tg.Expr)
			}
		}
		all := strings.Join(exprs, "\n")
		c, err := circuit.Compile(out.Policy, circuit.Env{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Readings() {
			if !strings.Contains(all, `signal_reading{policy_name="`+out.Policy.Metadata.Name+`",signal_name="`+r.Name+`"}`) {
				t.Errorf("%s: no panel for signal %s", b.Name, r.Name)
			}
		}
		for m := range out.Policy.Spec.Resources.FluxMeters {
			if !strings.Contains(all, `flux_meter_name="`+m+`"`) {
				t.Errorf("%s: no panel for flux meter %s", b.Name, m)
			}
		}
	}
}

func fileOf(t *testing.T, out *Output, suffix string) []byte {
	t.Helper()
	for _, f := range out.Files {
		if strings.HasSuffix(f.Name, suffix) {
			return f.Data
		}
	}
	t.Fatalf("no %s file", suffix)
	return nil
}

// TestPromtool runs `promtool check rules` on every generated rules file
// and `promtool test rules` on every generated test file.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found in PATH (Debian package prometheus; .ci/run installs it): generated rules not checked")
	}
	for _, b := range List() {
		t.Run(b.Name, func(t *testing.T) {
			dir := t.TempDir()
			out := generateExample(t, b)
			if err := out.WriteDir(dir); err != nil {
				t.Fatal(err)
			}
			name := out.Policy.Metadata.Name
			cmd := exec.Command(promtool, "check", "rules", name+".rules.yaml")
			cmd.Dir = dir
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool check rules: %v\n%s", err, msg)
			}
			if _, err := os.Stat(filepath.Join(dir, name+".rules_test.yaml")); err != nil {
				if strings.HasSuffix(b.Name, "-slo") {
					t.Fatalf("no rules test file: %v", err)
				}
				return
			}
			cmd = exec.Command(promtool, "test", "rules", name+".rules_test.yaml")
			cmd.Dir = dir
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool test rules: %v\n%s", err, msg)
			}
		})
	}
}

// TestRateLimitingRedisBackend: backend redis is passed through to the
// limiter, and the policy is valid without a Redis at hand.
func TestRateLimitingRedisBackend(t *testing.T) {
	b, _ := Lookup("rate-limiting")
	values := strings.Replace(string(b.Values()), "backend: local", "backend: redis", 1)
	out, err := b.Generate("values.yaml", []byte(values))
	if err != nil {
		t.Fatal(err)
	}
	rl := out.Policy.Spec.Circuit.Components[0].Spec.(*policies.RateLimiter)
	if rl.Parameters.Backend != policies.BackendRedis {
		t.Errorf("backend = %q", rl.Parameters.Backend)
	}
}

// encodeValues writes decoded values back as a values file.
func encodeValues(t *testing.T, s spec) []byte {
	t.Helper()
	data, err := yaml.Marshal(plain(reflect.ValueOf(s)))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// plain turns values into maps, slices and scalars yaml.v3 writes the way
// the values decoder reads them (durations as strings, yaml tags as keys).
func plain(v reflect.Value) any {
	switch v.Type() {
	case reflect.TypeFor[time.Duration]():
		return dur(time.Duration(v.Int()))
	case reflect.TypeFor[promDuration]():
		return promDuration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return plain(v.Elem())
	case reflect.Struct:
		m := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")
			switch {
			case len(tag) > 1 && tag[1] == "inline":
				maps.Copy(m, plain(v.Field(i)).(map[string]any))
			case !f.IsExported():
			case slices.Contains(tag, "omitempty") && v.Field(i).IsZero():
			default:
				m[tag[0]] = plain(v.Field(i))
			}
		}
		return m
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = plain(v.Index(i))
		}
		return out
	case reflect.Map:
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[k.String()] = plain(v.MapIndex(k))
		}
		return m
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Int, reflect.Int64:
		return v.Int()
	case reflect.Float64:
		return v.Float()
	}
	panic("plain: " + v.Type().String())
}

// TestServiceProtectionZeroConfig: policy_name and selectors are enough
// for the in-path loop; a latency objective becomes the component's
// latency_objective_ms port.
func TestServiceProtectionZeroConfig(t *testing.T) {
	b, err := Lookup("service-protection")
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Generate("v.yaml", []byte("policy_name: p\nselectors: [{control_point: ingress}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var ac *policies.AdaptiveConcurrency
	for _, c := range out.Policy.Spec.Circuit.Components {
		if a, ok := c.Spec.(*policies.AdaptiveConcurrency); ok {
			ac = a
		}
	}
	if ac == nil || ac.InPorts.LatencyObjectiveMs != nil || len(out.Policy.Spec.Circuit.Components) != 1 {
		t.Fatalf("zero-config policy: %d components, adaptive_concurrency %+v", len(out.Policy.Spec.Circuit.Components), ac)
	}
	if _, ok := out.Policy.Spec.Resources.FluxMeters["p"]; !ok {
		t.Errorf("flux meter not named after the policy: %v", out.Policy.Spec.Resources.FluxMeters)
	}
	out, err = b.Generate("v.yaml", []byte("policy_name: p\nselectors: [{control_point: ingress}]\nlatency_objective_ms: 40\n"))
	if err != nil {
		t.Fatal(err)
	}
	ac = out.Policy.Spec.Circuit.Components[0].Spec.(*policies.AdaptiveConcurrency)
	if v, ok := ac.InPorts.LatencyObjectiveMs.Constant(); !ok || v != 40 {
		t.Errorf("latency_objective_ms port = %v (constant %v), want 40", v, ok)
	}
	if _, err := b.Generate("v.yaml", []byte("policy_name: p\nselectors: [{control_point: ingress}]\nloop: sideways\n")); err == nil || !strings.Contains(err.Error(), "v.yaml:3:7: loop \"sideways\" is not one of in_path, flux_meter") {
		t.Errorf("bad loop: %v", err)
	}
	long := "policy_name: p\nselectors: [{control_point: ingress}]\nin_path:\n  max_flow_duration: 2h\n"
	if _, err := b.Generate("v.yaml", []byte(long)); err == nil || !strings.Contains(err.Error(), "v.yaml:4:22: in_path.max_flow_duration must be at most 10m0s") {
		t.Errorf("max_flow_duration over the bound: %v", err)
	}
}
