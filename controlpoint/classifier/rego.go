package classifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/fluxgate/fluxgate/policies"
)

// RegoTimeout bounds the Rego evaluations of one check together: every
// module Classify evaluates under one WithBudget context shares it (and
// one Classify call outside such a context gets it whole). A caller's
// earlier deadline applies too. Rego runs on the check path: a module
// that needs longer is broken, and Classify reports it.
const RegoTimeout = 50 * time.Millisecond

// budgetKey is the context key of a check's Rego deadline.
type budgetKey struct{}

// WithBudget returns ctx carrying the Rego time budget of one check,
// RegoTimeout from now: the Rego modules of every classifier called with
// it share that budget, so a check with several slow modules waits one
// budget, not one per module. Once it is spent, further modules are not
// evaluated and Classify reports it.
func WithBudget(ctx context.Context) context.Context {
	return context.WithValue(ctx, budgetKey{}, time.Now().Add(RegoTimeout))
}

// refusedBuiltins are builtins a classifier's Rego may not call, besides
// those OPA marks non-deterministic: they do I/O or read the clock.
var refusedBuiltins = []string{
	"http.send",
	"net.lookup_ip_addr",
	"opa.runtime",
	"time.now_ns",
	"rand.intn",
	"uuid.rfc4122",
	"io.jwt.decode_verify",
	"io.jwt.encode_sign",
	"io.jwt.encode_sign_raw",
	"providers.aws.sign_req",
	"crypto.x509.parse_and_verify_certificates",
	"crypto.x509.parse_and_verify_certificates_with_options",
}

// sandbox is the OPA capabilities classifiers compile with, and the names
// of the builtins left out.
var sandbox = sync.OnceValues(func() (*ast.Capabilities, map[string]bool) {
	caps := ast.CapabilitiesForThisVersion()
	refused := map[string]bool{}
	for _, name := range refusedBuiltins {
		refused[name] = true
	}
	kept := caps.Builtins[:0:0]
	for _, b := range caps.Builtins {
		if b.Nondeterministic {
			refused[b.Name] = true
		}
		if !refused[b.Name] {
			kept = append(kept, b)
		}
	}
	caps.Builtins = kept
	caps.AllowNet = []string{} // no host, should a network builtin remain
	return caps, refused
})

// regoQuery is a classifier's module compiled with one prepared query
// that binds, for each label, an array holding the label's rule value,
// or nothing when the rule is undefined.
type regoQuery struct {
	pq     rego.PreparedEvalQuery
	labels []string // sorted
	vars   []string // query variable of each label
}

func newRegoQuery(r *policies.Rego) (*regoQuery, error) {
	q := &regoQuery{labels: slices.Sorted(maps.Keys(r.Labels))}
	file := moduleFile(q.labels)
	caps, refused := sandbox()
	version := ast.RegoV1
	if r.RegoVersion == "v0" {
		version = ast.RegoV0
	}
	m, err := ast.ParseModuleWithOpts(file, r.Module, ast.ParserOptions{RegoVersion: version, Capabilities: caps})
	if err != nil {
		return nil, regoCompileError(err, refused)
	}
	type ruleInfo struct{ function bool }
	rules := map[string]ruleInfo{}
	for _, r := range m.Rules {
		if ref := r.Head.Ref(); len(ref) > 0 {
			if v, ok := ref[0].Value.(ast.Var); ok {
				rules[string(v)] = ruleInfo{function: rules[string(v)].function || len(r.Head.Args) > 0}
			}
		}
	}
	pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
	for _, l := range q.labels {
		first, _, _ := strings.Cut(l, ".")
		switch r, ok := rules[first]; {
		case !ok:
			return nil, fmt.Errorf("classifier: rego: label %q has no rule %s in package %s", l, first, pkg)
		case r.function:
			return nil, fmt.Errorf("classifier: rego: label %q: %s is a function; a label needs a rule without arguments", l, first)
		}
	}

	comp := ast.NewCompiler().
		WithCapabilities(caps).
		WithDefaultRegoVersion(ast.RegoV1).
		WithEnablePrintStatements(false)
	comp.Compile(map[string]*ast.Module{file: m})
	if comp.Failed() {
		return nil, regoCompileError(comp.Errors, refused)
	}

	// For label "a.b": lN := [xN | xN := data.<package>.a.b]
	body := make(ast.Body, 0, len(q.labels))
	for i, l := range q.labels {
		ref := m.Package.Path.Copy()
		for _, seg := range strings.Split(l, ".") {
			ref = append(ref, ast.StringTerm(seg))
		}
		x := ast.VarTerm("x" + strconv.Itoa(i))
		v := "l" + strconv.Itoa(i)
		q.vars = append(q.vars, v)
		values := ast.ArrayComprehensionTerm(x, ast.NewBody(ast.Assign.Expr(x, ast.RefTerm(ref...))))
		body.Append(ast.Assign.Expr(ast.VarTerm(v), values))
	}
	q.pq, err = rego.New(
		rego.Compiler(comp),
		rego.ParsedQuery(body),
		rego.Capabilities(caps),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(context.Background())
	if err != nil {
		return nil, regoCompileError(err, refused)
	}
	return q, nil
}

// moduleFile names a module after its labels, so OPA's messages say which
// module they are about.
func moduleFile(labels []string) string {
	name := strings.Join(labels, ",")
	if name == "" || len(name) > 64 {
		name = "classifier"
	}
	return name + ".rego"
}

// regoCompileError formats OPA's compile errors as "file:row:col: code:
// message", explaining refused builtins.
func regoCompileError(err error, refused map[string]bool) error {
	var errs ast.Errors
	if !errors.As(err, &errs) {
		return fmt.Errorf("classifier: rego: %w", err)
	}
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msg := e.Message
		if name, ok := strings.CutPrefix(msg, "undefined function "); ok && refused[name] {
			msg = "builtin " + name + " is not allowed in classifiers: their Rego gets no network, file or non-deterministic builtins"
		}
		var pos string
		if l := e.Location; l != nil {
			pos = fmt.Sprintf("%s:%d:%d: ", l.File, l.Row, l.Col)
		}
		msgs = append(msgs, pos+e.Code+": "+msg)
	}
	return errors.New("classifier: rego: " + strings.Join(msgs, "; "))
}

// eval evaluates the query for one flow, adding the labels it defines to
// out.
func (q *regoQuery) eval(ctx context.Context, controlPoint string, labels map[string]string, out map[string]string) error {
	deadline, shared := ctx.Value(budgetKey{}).(time.Time)
	if !shared {
		deadline = time.Now().Add(RegoTimeout)
	} else if !time.Now().Before(deadline) {
		return fmt.Errorf("classifier: rego: not evaluated: the check's %v Rego budget was spent by other modules", RegoTimeout)
	}
	ectx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	rs, err := q.pq.Eval(ectx, rego.EvalParsedInput(regoInput(controlPoint, labels)))
	if err != nil {
		if ctx.Err() == nil && errors.Is(ectx.Err(), context.DeadlineExceeded) {
			if shared {
				return fmt.Errorf("classifier: rego: evaluation took longer than the %v Rego budget of its check: %w", RegoTimeout, err)
			}
			return fmt.Errorf("classifier: rego: evaluation took longer than %v: %w", RegoTimeout, err)
		}
		return fmt.Errorf("classifier: rego: %w", err)
	}
	if len(rs) == 0 {
		return nil
	}
	for i, l := range q.labels {
		if vs, ok := rs[0].Bindings[q.vars[i]].([]any); ok && len(vs) > 0 {
			out[l] = regoString(vs[0])
		}
	}
	return nil
}

// regoInput builds the input document {"control_point": cp, "labels":
// {...}} as an AST value, which saves OPA a JSON round trip.
func regoInput(controlPoint string, labels map[string]string) ast.Value {
	items := make([][2]*ast.Term, 0, len(labels))
	for k, v := range labels {
		items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	return ast.NewObject(
		ast.Item(ast.StringTerm("control_point"), ast.StringTerm(controlPoint)),
		ast.Item(ast.StringTerm("labels"), ast.ObjectTerm(items...)),
	)
}

// regoString converts a rule value to a label value: strings as they are,
// numbers and booleans as text, anything else as JSON.
func regoString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
