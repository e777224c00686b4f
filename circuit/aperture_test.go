package circuit_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/circuit/circuittest"
	"github.com/fluxgate/fluxgate/controlpoint"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// apertureWarnings lists, for each policy of testdata/aperture, the
// warnings Parse must give, in order.
var apertureWarnings = map[string][]string{
	"aimd.yaml": {serviceWarning("aimd.yaml:17:24", "checkout.prod.svc.cluster.local")},
	"aiad.yaml": {
		serviceWarning("aiad.yaml:34:63", "orders"),
		`aiad.yaml:38:5: warning: Aperture construct resources.infra_meters is ignored (postgresql): FluxGate runs no OpenTelemetry collector; queries over their metrics find nothing unless another exporter provides them`,
		`aiad.yaml:33:17: warning: Aperture construct workload_latency_based_tokens is ignored: a flow costs 1 token, or its tokens_label_key label`,
		`aiad.yaml:21:13: warning: Aperture construct dry_run_config_key is ignored: FluxGate has no dynamic dry-run switch; dry_run applies as written`,
	},
	"rate-limiter.yaml": {serviceWarning("rate-limiter.yaml:28:26", "api")},
	"quota-scheduler.yaml": {
		`quota-scheduler.yaml:22:15: warning: Aperture construct lazy_sync is ignored: the buckets are local to the agent`,
		`quota-scheduler.yaml:32:15: warning: Aperture construct scheduler.decision_deadline_margin is ignored: a flow never waits past its caller's deadline`,
	},
	"concurrency-limiter.yaml": {
		`concurrency-limiter.yaml:19:15: warning: Aperture construct parameters.max_idle_time is ignored: a key's count is dropped as soon as its last flow ends`,
	},
	"concurrency-scheduler.yaml": nil,
	"load-ramp.yaml": {
		serviceWarning("load-ramp.yaml:29:63", "checkout"),
		`load-ramp.yaml:37:13: warning: Aperture construct pass_through_label_values_config_key is ignored: FluxGate's sampler reads pass_through_label_values from the policy only`,
	},
	"auto-scale.yaml": {
		serviceWarning("auto-scale.yaml:26:59", "app"),
		`auto-scale.yaml:13:11: warning: Aperture construct auto_scale.auto_scaler is ignored: FluxGate does not scale workloads; the component is dropped and its out ports are not produced`,
	},
}

// serviceWarning is the warning, once per service name, for an Aperture
// selector naming a service: FluxGate matches it against the flow label
// service, which Aperture's agents derive from service discovery.
func serviceWarning(at, service string) string {
	return at + `: warning: Aperture selector service "` + service + `" matches only flows labelled service=` + service +
		`: FluxGate discovers no services, so callers must set that label (in the check's labels or W3C baggage; for flux meters, a span attribute)`
}

// parseAperture parses one corpus file, which must hold one valid Aperture
// policy.
func parseAperture(t *testing.T, file string) *policies.Document {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../policies/testdata/aperture", file))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := policies.Parse(file, data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(docs) != 1 || docs[0].Form != policies.FormAperture {
		t.Fatalf("got %d documents (form %q), want 1 Aperture policy", len(docs), docs[0].Form)
	}
	return docs[0]
}

// The Aperture corpus lives in policies/testdata/aperture; its tests are
// here because they compile circuits, and the policies package's tests
// must not see the circuit kinds in their registry.

// TestAperturePolicies loads every Aperture policy of the corpus: it must
// translate with exactly its warnings, compile as a circuit, and its
// native form (Source, what `fluxgate policy convert` prints) must load as
// a native policy equal to the translation.
func TestAperturePolicies(t *testing.T) {
	files, _ := filepath.Glob("../policies/testdata/aperture/*.yaml")
	n := 0
	for _, path := range files {
		file := filepath.Base(path)
		if strings.HasSuffix(file, ".bad.yaml") {
			continue
		}
		n++
		t.Run(file, func(t *testing.T) {
			want, ok := apertureWarnings[file]
			if !ok {
				t.Fatalf("add %s to apertureWarnings", file)
			}
			d := parseAperture(t, file)
			var got []string
			for _, w := range d.Warnings {
				got = append(got, w.Error())
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			p := d.Object.(*policies.Policy)
			var inputs []string // signals the test feeds
			switch file {
			case "aimd.yaml":
				inputs = []string{"SIGNAL", "SETPOINT"}
			case "load-ramp.yaml":
				inputs = []string{"FORWARD", "RESET_IN"}
			}
			if _, err := circuit.Compile(p, circuit.Env{Inputs: inputs}); err != nil {
				t.Fatalf("Compile: %v", err)
			}
			again, err := policies.Parse("native.yaml", d.Source)
			if err != nil {
				t.Fatalf("native form does not load: %v\n%s", err, d.Source)
			}
			if again[0].Form != policies.FormNative || !bytes.Contains(d.Source, []byte("apiVersion: "+policies.APIVersion)) {
				t.Fatalf("native form read as %q:\n%s", again[0].Form, d.Source)
			}
			if a, b := marshal(t, p), marshal(t, again[0].Object); a != b {
				t.Errorf("native form loads differently:\n%s\nwant:\n%s", b, a)
			}
		})
	}
	if n < 7 {
		t.Fatalf("only %d corpus policies", n)
	}
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	out, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestApertureErrors checks what cannot be translated: every problem, at
// its position in the Aperture file, naming the construct.
func TestApertureErrors(t *testing.T) {
	data, err := os.ReadFile("../policies/testdata/aperture/unsupported.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = policies.Parse("unsupported.bad.yaml", data)
	var list strictyaml.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse: %v, want an ErrorList", err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	want := []string{
		`unsupported.bad.yaml:10:111: target_accept_percentage: must be within 0..100, got 101`,
		`unsupported.bad.yaml:10:132: Aperture construct flow_control.load_ramp.parameters.cohort is not supported yet`,
		`unsupported.bad.yaml:19:40: Aperture construct flow_control.rate_limiter.parameters.burst is not supported yet`,
		`unsupported.bad.yaml:20:63: unknown status code "Busy": want a number or a name such as BadRequest, TooManyRequests, ServiceUnavailable`,
		`unsupported.bad.yaml:28:17: Aperture construct scheduler.priority_label_key is not supported yet`,
		`unsupported.bad.yaml:34:7: Aperture construct kind "Agent" (only Policy) is not supported yet`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, e := range got {
		if strings.Contains(e, "RateLimiter") || strings.Contains(e, "Parameters") {
			t.Errorf("error names a Go type: %s", e)
		}
	}
}

// A field one or two letters from one FluxGate reads is a typo, reported
// as an unknown field with the name meant, not as an Aperture construct
// FluxGate lacks; a field near none stays a construct not supported.
func TestApertureTypoSuggestsField(t *testing.T) {
	const doc = `apiVersion: fluxninja.com/v1alpha1
kind: Policy
metadata: {name: rl}
spec:
  circuit:
    components:
    - flow_control:
        rate_limiter:
          selectors: [{control_point: ingress}]
          in_ports:
            bucket_capacity: {constant_signal: {value: 40}}
            fill_amount: {constant_signal: {value: 2}}
          parameters: {interval: 1s, limit_by_label_kye: user, burst: 3}
`
	_, err := policies.Parse("rl.yaml", []byte(doc))
	var list strictyaml.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse: %v, want an ErrorList", err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	want := []string{
		`rl.yaml:13:38: unknown field "limit_by_label_kye" in flow_control.rate_limiter.parameters; did you mean "limit_by_label_key"?`,
		`rl.yaml:13:64: Aperture construct flow_control.rate_limiter.parameters.burst is not supported yet`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestApertureAIMDBehaves runs the translated AIMD policy: the load
// scheduler's multiplier is cut by the gradient under overload and
// recovers by the linear increment every 10s, as Aperture documents.
func TestApertureAIMDBehaves(t *testing.T) {
	p := parseAperture(t, "aimd.yaml").Object.(*policies.Policy)
	ls := -1
	for i, c := range p.Spec.Circuit.Components {
		if c.Kind == "flow_control.load_scheduler" {
			ls = i
			sched := c.Spec.(*policies.LoadScheduler)
			if got := sched.Parameters.DeniedResponseStatusCode; got != 503 {
				t.Errorf("denied_response_status_code = %d, want 503 (ServiceUnavailable)", got)
			}
			if w := sched.Parameters.Workloads; len(w) != 2 || w[0].Parameters.Priority != 50 || w[0].Parameters.QueueTimeout != 2*time.Second {
				t.Errorf("workloads = %+v", w)
			}
		}
	}
	if ls < 0 {
		t.Fatal("no flow_control.load_scheduler in the translation")
	}
	if len(p.Spec.Resources.FluxMeters) != 1 || len(p.Spec.Resources.Classifiers) != 1 {
		t.Fatalf("resources.flow_control not moved: %+v", p.Spec.Resources)
	}
	act := &circuittest.FakeActuators{}
	c, err := circuit.Compile(p, circuit.Env{Inputs: []string{"SIGNAL", "SETPOINT"}, Actuators: act})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		second         int
		signal, setpt  float64
		wantMultiplier float64 // NaN-free; 0 means invalid (pass-through)
	}{
		{0, 100, 100, 0},     // starts in pass-through
		{1, 250, 100, 0.4},   // overload: (250/100)^-1 × 1
		{2, 200, 100, 0.2},   // 0.5 × 0.4
		{3, 90, 100, 0.2},    // recovered: wait 10s
		{11, 90, 100, 0.2},   //
		{12, 90, 100, 0.225}, // +0.025
		{22, 90, 100, 0.25},
	}
	for _, s := range steps {
		c.SetInput("SIGNAL", circuit.Value(s.signal))
		c.SetInput("SETPOINT", circuit.Value(s.setpt))
		c.Step(t0.Add(time.Duration(s.second) * time.Second))
		got, ok := act.Last(ls, "load_multiplier")
		switch {
		case !ok:
			t.Fatalf("t=%ds: the load scheduler got no load_multiplier", s.second)
		case s.wantMultiplier == 0 && got == got:
			t.Errorf("t=%ds: load_multiplier = %v, want invalid (pass-through)", s.second, got)
		case s.wantMultiplier != 0 && (got-s.wantMultiplier > 1e-9 || s.wantMultiplier-got > 1e-9):
			t.Errorf("t=%ds: load_multiplier = %v, want %v", s.second, got, s.wantMultiplier)
		}
	}
}

// TestApertureTranslations checks the mappings that are not circuits:
// accept_percentage as a query of the limiter's decisions, label_key,
// named status codes, empty or/and.
func TestApertureTranslations(t *testing.T) {
	p := parseAperture(t, "rate-limiter.yaml").Object.(*policies.Policy)
	comps := p.Spec.Circuit.Components
	rl := comps[0].Spec.(*policies.RateLimiter)
	if rl.Parameters.LimitByLabelKey != "http.request.header.user_id" || rl.RequestParameters.DeniedResponseStatusCode != 400 ||
		rl.InPorts.PassThrough == nil || rl.InPorts.PassThrough.SignalName != "NEVER" {
		t.Errorf("rate limiter = %+v", rl)
	}
	cs := parseAperture(t, "concurrency-scheduler.yaml").Object.(*policies.Policy).Spec.Circuit.Components[0].Spec.(*policies.ConcurrencyScheduler)
	if cs.Scheduler.FairnessLabelKey != "user" || cs.InPorts.PassThrough == nil {
		t.Errorf("concurrency scheduler = %+v", cs)
	}
	q, ok := comps[1].Spec.(*circuit.PromQL)
	if !ok || comps[1].Kind != "query.promql" {
		t.Fatalf("component 1 is %s, want the accept_percentage query", comps[1].Kind)
	}
	if !strings.Contains(q.QueryString, `policy_name="rate-limiting",component_id="0",decision_type="DECISION_TYPE_ACCEPTED"`) ||
		q.OutPorts.Output.SignalName != "ACCEPT_PERCENTAGE" {
		t.Errorf("accept_percentage query = %q → %+v", q.QueryString, q.OutPorts.Output)
	}
	c, err := circuit.Compile(p, circuit.Env{})
	if err != nil {
		t.Fatal(err)
	}
	c.Step(time.Unix(1_700_000_000, 0))
	for name, want := range map[string]circuit.Signal{"NEVER": circuit.Bool(false), "ALWAYS": circuit.Bool(true)} {
		if got, _ := c.Value(name); got != want {
			t.Errorf("%s = %+v, want %+v", name, got, want)
		}
	}
	s := parseAperture(t, "auto-scale.yaml").Object.(*policies.Policy)
	if len(s.Spec.Circuit.Components) != 1 || s.Spec.Circuit.Components[0].Spec.(*policies.Sampler).Parameters.DeniedResponseStatusCode != 429 {
		t.Errorf("auto-scale.yaml components = %+v", s.Spec.Circuit.Components)
	}
}

// TestApertureRepository loads the policies of Aperture's public
// repository when its mirror is on this machine (it is not in CI: the
// corpus above carries the tests) and reports how many load unchanged.
func TestApertureRepository(t *testing.T) {
	const repo = "/work/.mirror/fluxninja+aperture/repo"
	if _, err := os.Stat(repo); err != nil {
		t.Skip("no mirror of Aperture's repository at " + repo)
	}
	out, err := exec.Command("git", "-C", repo, "grep", "-l", "^kind: Policy", "HEAD", "--", "*.yaml").Output()
	if err != nil {
		t.Fatal(err)
	}
	engine, err := controlpoint.New(controlpoint.Options{DecisionLogPerSecond: -1})
	if err != nil {
		t.Fatal(err)
	}
	loaded, total := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path := strings.TrimPrefix(line, "HEAD:")
		data, err := exec.Command("git", "-C", repo, "show", "HEAD:"+path).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(policies.ApertureAPIVersion)) {
			continue
		}
		total++
		docs, err := policies.Parse(path, data)
		if err == nil {
			_, err = circuit.Compile(docs[0].Object.(*policies.Policy), circuit.Env{})
		}
		if err == nil {
			err = engine.Validate(docs[0].Object) // the flow-control components compile too
		}
		if err != nil {
			t.Logf("does not load: %v", err)
			continue
		}
		loaded++
	}
	t.Logf("%d of %d Aperture policies load unchanged", loaded, total)
	if total != 34 || loaded < 34 {
		t.Errorf("%d of %d load; the census in README says 34 of 34", loaded, total)
	}
}

// TestApertureLoadRampBehaves runs the translated load ramp: a sampler in
// ramp mode whose accept_percentage walks the steps while forward is true
// (jumping to the 0s first step, then linearly), holds while it is false,
// and goes back to the first step on reset, the out ports following.
func TestApertureLoadRampBehaves(t *testing.T) {
	p := parseAperture(t, "load-ramp.yaml").Object.(*policies.Policy)
	smp := -1
	for i, c := range p.Spec.Circuit.Components {
		if c.Kind == "flow_control.sampler" {
			smp = i
			s := c.Spec.(*policies.Sampler)
			if !s.Parameters.RampMode || s.Parameters.SessionLabelKey != "user" || s.Parameters.DeniedResponseStatusCode != 503 ||
				len(s.PassThroughLabelValues) != 1 || s.PassThroughLabelValues[0] != "tester" ||
				len(s.Selectors) != 1 || s.Selectors[0].Service != "checkout" {
				t.Errorf("sampler = %+v", s)
			}
		}
	}
	if smp < 0 {
		t.Fatal("no flow_control.sampler in the translation")
	}
	act := &circuittest.FakeActuators{}
	c, err := circuit.Compile(p, circuit.Env{Inputs: []string{"FORWARD", "RESET_IN"}, Actuators: act})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		second         int
		forward, reset bool
		want           float64
		done           bool
	}{
		{0, false, false, 10, false}, // the first step's target
		{5, false, false, 10, false}, // holds without forward
		{6, true, false, 12, false},  // forward: 1s into 10 → 50 over 20s
		{15, true, false, 30, false}, // halfway
		{25, true, false, 50, false},
		{30, true, false, 75, false}, // 50 → 100 over 10s
		{35, true, false, 100, true},
		{40, true, false, 100, true}, // stays at the end
		{41, true, true, 10, false},  // reset
		{42, false, false, 10, false},
	}
	for _, s := range steps {
		c.SetInput("FORWARD", circuit.Bool(s.forward))
		c.SetInput("RESET_IN", circuit.Bool(s.reset))
		c.Step(t0.Add(time.Duration(s.second) * time.Second))
		got, ok := act.Last(smp, "accept_percentage")
		if !ok || got-s.want > 1e-9 || s.want-got > 1e-9 {
			t.Errorf("t=%ds: accept_percentage = %v (set %v), want %v", s.second, got, ok, s.want)
		}
		if v, _ := c.Value("RAMP_PERCENTAGE"); v != circuit.Value(s.want) {
			t.Errorf("t=%ds: RAMP_PERCENTAGE = %+v, want %v", s.second, v, s.want)
		}
		if v, _ := c.Value("RAMP_DONE"); v != circuit.Bool(s.done) {
			t.Errorf("t=%ds: RAMP_DONE = %+v, want %v", s.second, v, s.done)
		}
	}
}
