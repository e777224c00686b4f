package classifier

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestZZScratch(t *testing.T) {
	caps := ast.CapabilitiesForThisVersion()
	var keep []*ast.Builtin
	for _, b := range caps.Builtins {
		if b.Nondeterministic {
			fmt.Println("ND", b.Name, b.Categories)
			continue
		}
		keep = append(keep, b)
	}
	caps.Builtins = keep
	for _, src := range []string{
		"package a.b\nx := http.send({\"method\":\"get\",\"url\":\"http://x\"})\n",
		"package a.b\nx := 1 +\n",
		"package a.b\nx := y\n",
		"package a.b\nx = \"a\" if input.p\nx = \"b\" if input.q\n",
		"package a.b\nx := to_number(input.s)\n",
	} {
		m, err := ast.ParseModuleWithOpts("t.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1, Capabilities: caps})
		if err != nil {
			fmt.Printf("PARSE %T %v\n", err, err)
			continue
		}
		pq, err := rego.New(rego.ParsedModule(m), rego.Query("v := [x | x := data.a.b.x]"), rego.Capabilities(caps), rego.StrictBuiltinErrors(true), rego.SetRegoVersion(ast.RegoV1)).PrepareForEval(context.Background())
		if err != nil {
			fmt.Printf("PREP %T %v\n", err, err)
			continue
		}
		rs, err := pq.Eval(context.Background(), rego.EvalInput(map[string]any{"p": true, "q": true, "s": "abc"}))
		fmt.Printf("EVAL %v %T %v\n", rs, err, err)
	}
}
