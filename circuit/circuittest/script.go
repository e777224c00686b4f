package circuittest

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxgate/fluxgate/circuit"
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

// T0 is the time of tick 0.
var T0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Tolerances of value comparisons.
const (
	RelTolerance = 1e-9
	AbsTolerance = 1e-12
)

// alertWait bounds how long "expect alerts" waits for asynchronous
// notifications.
const alertWait = time.Second

// RunDir runs every *.test script of dir as a subtest named by its file.
func RunDir(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.test"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("circuittest: no *.test files in %s", dir)
	}
	sort.Strings(files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { RunFile(t, f) })
	}
}

// RunFile runs one script.
func RunFile(t testing.TB, path string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	Run(t, path, src)
}

// Run runs a script held in memory; file names it in errors.
func Run(t testing.TB, file string, src []byte) {
	t.Helper()
	r := &runner{t: t, file: file}
	r.run(strings.Split(string(src), "\n"))
}

// runner holds the state of one script.
type runner struct {
	t    testing.TB
	file string
	cur  *testCircuit
}

// testCircuit is one "circuit … end" block and its run.
type testCircuit struct {
	line       int // of the "circuit" command
	interval   time.Duration
	yaml       []string
	yamlLine   int // script line of the first YAML line
	inputs     []string
	actuators  *FakeActuators
	alerts     *FakeAlerts
	noSink     bool
	dynamic    *circuit.DynamicConfig
	dynValues  map[string]any
	logs       *lockedBuffer
	compiled   bool
	compileErr error
	c          *circuit.Circuit
	policy     *policies.Policy
	next       int // the next tick to run
}

func (r *runner) errorf(line int, format string, args ...any) {
	r.t.Helper()
	r.t.Errorf("%s:%d: %s", r.file, line, fmt.Sprintf(format, args...))
}

func (r *runner) run(lines []string) {
	r.t.Helper()
	for i := 0; i < len(lines); i++ {
		lineNo := i + 1
		fields, err := tokenize(lines[i])
		if err != nil {
			r.errorf(lineNo, "%v", err)
			return
		}
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "circuit":
			end := i + 1
			for end < len(lines) && strings.TrimSpace(lines[end]) != "end" {
				end++
			}
			if end == len(lines) {
				r.errorf(lineNo, "circuit without end")
				return
			}
			if err := r.startCircuit(lineNo, fields[1:], lines[i+1:end], i+2); err != nil {
				r.errorf(lineNo, "%v", err)
				return
			}
			i = end
		case "inputs", "dynamic", "tick", "expect":
			if r.cur == nil {
				r.errorf(lineNo, "%s before any circuit", fields[0])
				return
			}
			if err := r.command(lineNo, fields); err != nil {
				r.errorf(lineNo, "%v", err)
				if errors.Is(err, errStop) {
					return
				}
			}
		default:
			r.errorf(lineNo, "unknown command %q", fields[0])
			return
		}
	}
}

// errStop marks a script error after which the script cannot go on.
var errStop = errors.New("script stopped")

func (r *runner) startCircuit(line int, args, yaml []string, yamlLine int) error {
	if len(args) == 0 {
		return fmt.Errorf("circuit needs an evaluation interval")
	}
	interval, err := time.ParseDuration(args[0])
	if err != nil || interval <= 0 {
		return fmt.Errorf("bad evaluation interval %q", args[0])
	}
	tc := &testCircuit{line: line, interval: interval, yaml: yaml, yamlLine: yamlLine,
		actuators: &FakeActuators{}, alerts: &FakeAlerts{}, dynamic: circuit.NewDynamicConfig(),
		dynValues: map[string]any{}, logs: &lockedBuffer{}}
	for _, a := range args[1:] {
		switch a {
		case "no_alert_sink":
			tc.noSink = true
		default:
			return fmt.Errorf("unknown circuit option %q", a)
		}
	}
	r.cur = tc
	return nil
}

const header = "apiVersion: fluxgate.io/v1beta1\nkind: Policy\nmetadata:\n  name: circuittest\nspec:\n  circuit:\n    evaluation_interval: %s\n    components:\n"

const (
	headerLines = 8
	indent      = "      "
)

// compile builds the current circuit once, on its first use.
func (r *runner) compile() error {
	tc := r.cur
	if tc.compiled {
		return tc.compileErr
	}
	tc.compiled = true
	var b strings.Builder
	fmt.Fprintf(&b, header, tc.interval)
	for _, l := range tc.yaml {
		b.WriteString(indent + l + "\n")
	}
	tc.compileErr = func() error {
		docs, err := policies.Parse("circuittest.yaml", []byte(b.String()))
		if err != nil {
			return r.relocate(err)
		}
		if len(docs) != 1 {
			return fmt.Errorf("expected one policy, got %d documents", len(docs))
		}
		tc.policy = docs[0].Object.(*policies.Policy)
		env := circuit.Env{
			Actuators: tc.actuators,
			Dynamic:   tc.dynamic,
			Logger:    slog.New(slog.NewTextHandler(tc.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Inputs:    tc.inputs,
		}
		if !tc.noSink {
			env.Alerts = tc.alerts
		}
		c, err := circuit.Compile(tc.policy, env)
		if err != nil {
			return r.relocate(err)
		}
		tc.c = c
		if len(tc.dynValues) > 0 {
			tc.dynamic.Set(tc.policy.Key(), tc.dynValues)
		}
		return nil
	}()
	return tc.compileErr
}

// relocate moves positioned errors from the generated policy to the
// script.
func (r *runner) relocate(err error) error {
	var list strictyaml.ErrorList
	if !errors.As(err, &list) {
		return err
	}
	out := make(strictyaml.ErrorList, len(list))
	for i, e := range list {
		c := *e
		if c.Line > headerLines {
			c.File = r.file
			c.Line, c.Column = r.scriptPos(c.Line, c.Column)
		}
		c.Msg = atLine.ReplaceAllStringFunc(c.Msg, func(m string) string {
			var l, col int
			if _, err := fmt.Sscanf(m, "at line %d, column %d", &l, &col); err != nil || l <= headerLines {
				return m
			}
			l, col = r.scriptPos(l, col)
			return fmt.Sprintf("at line %d, column %d", l, col)
		})
		out[i] = &c
	}
	return out
}

// atLine finds positions that error messages mention.
var atLine = regexp.MustCompile(`at line \d+, column \d+`)

// scriptPos maps a position in the generated policy to the script.
func (r *runner) scriptPos(line, col int) (int, int) {
	return r.cur.yamlLine + line - headerLines - 1, max(col-len(indent), 0)
}

func (r *runner) command(line int, f []string) error {
	r.t.Helper()
	tc := r.cur
	switch f[0] {
	case "inputs":
		if tc.compiled {
			return fmt.Errorf("inputs after the circuit started")
		}
		tc.inputs = append(tc.inputs, f[1:]...)
		return nil
	case "dynamic":
		return r.dynamicCmd(f[1:])
	case "expect":
		if len(f) >= 2 && f[1] == "error" {
			if len(f) != 3 {
				return fmt.Errorf(`expect error needs one quoted text: expect error "TEXT"`)
			}
			err := r.compile()
			switch {
			case err == nil:
				return fmt.Errorf("circuit compiled, want an error containing %q", f[2])
			case !strings.Contains(err.Error(), f[2]):
				return fmt.Errorf("error %q does not contain %q", err.Error(), f[2])
			}
			return nil
		}
		if err := r.compile(); err != nil {
			return fmt.Errorf("%w: circuit does not compile: %w", errStop, err)
		}
		return r.expect(f[1:])
	case "tick":
		if err := r.compile(); err != nil {
			return fmt.Errorf("%w: circuit does not compile: %w", errStop, err)
		}
		return r.tick(line, f[1:])
	}
	return nil
}

func (r *runner) dynamicCmd(args []string) error {
	tc := r.cur
	if len(args) == 1 && args[0] == "clear" {
		clear(tc.dynValues)
	} else {
		for _, a := range args {
			k, v, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return fmt.Errorf("dynamic: %q is not KEY=VALUE", a)
			}
			switch v {
			case "true", "false":
				tc.dynValues[k] = v == "true"
			default:
				if x, err := strconv.ParseFloat(v, 64); err == nil {
					tc.dynValues[k] = x
				} else {
					tc.dynValues[k] = v
				}
			}
		}
	}
	if tc.policy != nil {
		tc.dynamic.Set(tc.policy.Key(), tc.dynValues)
	}
	return nil
}

func (r *runner) tick(line int, args []string) error {
	r.t.Helper()
	tc := r.cur
	if len(args) == 0 {
		return fmt.Errorf("tick needs a tick number")
	}
	from, to, err := parseRange(args[0])
	if err != nil {
		return err
	}
	if from < tc.next {
		return fmt.Errorf("%w: tick %d is in the past (next is %d)", errStop, from, tc.next)
	}
	for tc.next < from { // skipped ticks keep the previous inputs
		tc.c.Step(T0.Add(time.Duration(tc.next) * tc.interval))
		tc.next++
	}
	var expects []string
	for i, a := range args[1:] {
		if a == "expect" {
			expects = args[i+2:]
			break
		}
		name, v, err := assignment(a)
		if err != nil {
			return err
		}
		if !tc.c.SetInput(name, v) {
			return fmt.Errorf("%q is not an input (declare it with inputs)", name)
		}
	}
	for n := from; n <= to; n++ {
		tc.c.Step(T0.Add(time.Duration(n) * tc.interval))
		tc.next = n + 1
		for _, e := range expects {
			name, want, err := assignment(e)
			if err != nil {
				return err
			}
			got, ok := tc.c.Value(name)
			if !ok {
				return fmt.Errorf("no signal %q", name)
			}
			if !Equal(got, want) {
				r.errorf(line, "tick %d: %s = %s, want %s", n, name, Format(got), Format(want))
			}
		}
	}
	return nil
}

func (r *runner) expect(args []string) error {
	r.t.Helper()
	tc := r.cur
	if len(args) == 0 {
		return fmt.Errorf("expect what? actuator, alerts, log or error")
	}
	switch args[0] {
	case "actuator":
		var bad []string
		for _, a := range args[1:] {
			key, want, err := assignment(a)
			if err != nil {
				return err
			}
			idx, port, ok := strings.Cut(key, ".")
			comp, err := strconv.Atoi(idx)
			if !ok || err != nil {
				return fmt.Errorf("actuator %q: want COMPONENT.PORT=VALUE", a)
			}
			v, called := tc.actuators.Last(comp, port)
			switch {
			case !called:
				bad = append(bad, fmt.Sprintf("actuator %d.%s never received a value", comp, port))
			case !Equal(circuit.Value(v), want):
				bad = append(bad, fmt.Sprintf("actuator %d.%s = %s, want %s", comp, port, Format(circuit.Value(v)), Format(want)))
			}
		}
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "; "))
		}
	case "alerts":
		var want []string
		if len(args) != 2 || args[1] != "none" {
			want = args[1:]
		}
		var events []AlertEvent
		if len(want) == 0 {
			time.Sleep(20 * time.Millisecond) // let a stray notification arrive
			events = tc.alerts.Events()
		} else {
			events = tc.alerts.WaitFor(len(want), alertWait)
		}
		got := make([]string, len(events))
		for i, e := range events {
			got[i] = "fire:" + e.Alert.Name
			if e.Resolve {
				got[i] = "resolve:" + e.Alert.Name
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("alerts = [%s], want [%s]", strings.Join(got, " "), strings.Join(want, " "))
		}
	case "log":
		if len(args) != 2 {
			return fmt.Errorf(`expect log needs one quoted text: expect log "TEXT"`)
		}
		if logs := tc.logs.String(); !strings.Contains(logs, args[1]) {
			return fmt.Errorf("no log line contains %q; logs:\n%s", args[1], logs)
		}
	case "no":
		if len(args) != 3 || args[1] != "log" {
			return fmt.Errorf(`want: expect no log "TEXT"`)
		}
		if logs := tc.logs.String(); strings.Contains(logs, args[2]) {
			return fmt.Errorf("a log line contains %q; logs:\n%s", args[2], logs)
		}
	default:
		return fmt.Errorf("expect %q: want actuator, alerts, log, no log or error", args[0])
	}
	return nil
}

// Equal reports whether two signals match: both invalid, or both valid
// with values within the tolerances.
func Equal(got, want circuit.Signal) bool {
	if !got.Valid || !want.Valid {
		return got.Valid == want.Valid
	}
	d := math.Abs(got.V - want.V)
	return d <= AbsTolerance || d <= RelTolerance*math.Max(math.Abs(got.V), math.Abs(want.V))
}

// Format writes a signal as scripts do.
func Format(s circuit.Signal) string {
	if !s.Valid {
		return "invalid"
	}
	return strconv.FormatFloat(s.V, 'g', -1, 64)
}

// ParseValue reads a script value: a number, true, false or invalid.
func ParseValue(s string) (circuit.Signal, error) {
	switch s {
	case "invalid":
		return circuit.Invalid, nil
	case "true":
		return circuit.Bool(true), nil
	case "false":
		return circuit.Bool(false), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return circuit.Invalid, fmt.Errorf("bad value %q: want a number, true, false or invalid", s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return circuit.Invalid, fmt.Errorf("bad value %q: write invalid", s)
	}
	return circuit.Value(v), nil
}

func assignment(a string) (string, circuit.Signal, error) {
	name, v, ok := strings.Cut(a, "=")
	if !ok || name == "" {
		return "", circuit.Invalid, fmt.Errorf("%q is not NAME=VALUE", a)
	}
	s, err := ParseValue(v)
	return name, s, err
}

func parseRange(s string) (from, to int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	from, err = strconv.Atoi(a)
	to = from
	if err == nil && isRange {
		to, err = strconv.Atoi(b)
	}
	if err != nil || from < 0 || to < from {
		return 0, 0, fmt.Errorf("bad tick %q: want N or N-M with N ≤ M", s)
	}
	return from, to, nil
}

// tokenize splits a command line at blanks, keeping "double quoted" text
// (with \" and \\ escapes) as one field, and drops a # comment.
func tokenize(line string) ([]string, error) {
	var fields []string
	var cur strings.Builder
	inField, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case quoted && c == '"':
			quoted = false
		case quoted:
			cur.WriteByte(c)
		case c == '"':
			quoted, inField = true, true
		case c == '#':
			i = len(line)
		case c == ' ' || c == '\t' || c == '\r':
			if inField {
				fields = append(fields, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			cur.WriteByte(c)
			inField = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inField {
		fields = append(fields, cur.String())
	}
	return fields, nil
}

// lockedBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
