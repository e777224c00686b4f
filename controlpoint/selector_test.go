package controlpoint

import (
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/policies/strictyaml"
)

func compileSelector(t *testing.T, src, group string) []selector {
	t.Helper()
	var sels []policies.Selector
	if err := strictyaml.Unmarshal("sel.yaml", []byte(src), &sels); err != nil {
		t.Fatal(err)
	}
	out, err := compileSelectors(sels, group)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSelectorMatching(t *testing.T) {
	flows := map[string]map[string]string{
		"free-alice": {"tier": "free", "user": "alice", "service": "cart", "path": "/api/items"},
		"paid-bob":   {"tier": "paid", "user": "bob", "service": "cart", "path": "/admin"},
		"anon":       {"path": "/"},
	}
	tests := []struct {
		name, sel string
		want      []string // flows that match
	}{
		{"control point only", `[{control_point: ingress}]`, []string{"anon", "free-alice", "paid-bob"}},
		{"match_labels", `[{control_point: ingress, label_matcher: {match_labels: {tier: free}}}]`, []string{"free-alice"}},
		{"match_labels all must hold", `[{control_point: ingress, label_matcher: {match_labels: {tier: free, user: bob}}}]`, nil},
		{"In", `[{control_point: ingress, label_matcher: {match_list: [{key: user, operator: In, values: [alice, bob]}]}}]`, []string{"free-alice", "paid-bob"}},
		{"NotIn matches absent", `[{control_point: ingress, label_matcher: {match_list: [{key: user, operator: NotIn, values: [alice]}]}}]`, []string{"anon", "paid-bob"}},
		{"Exists", `[{control_point: ingress, label_matcher: {match_list: [{key: tier, operator: Exists}]}}]`, []string{"free-alice", "paid-bob"}},
		{"DoesNotExist", `[{control_point: ingress, label_matcher: {match_list: [{key: tier, operator: DoesNotExist}]}}]`, []string{"anon"}},
		{"expression not", `[{control_point: ingress, label_matcher: {expression: {not: {label_equals: {label: tier, value: free}}}}}]`, []string{"anon", "paid-bob"}},
		{"expression all/any", `[{control_point: ingress, label_matcher: {expression: {all: {of: [
				{label_exists: user},
				{any: {of: [{label_equals: {label: tier, value: paid}}, {label_matches: {label: path, regex: "^/api/"}}]}}]}}}}]`,
			[]string{"free-alice", "paid-bob"}},
		{"label_matches anchored by the regex only", `[{control_point: ingress, label_matcher: {expression: {label_matches: {label: path, regex: "min"}}}}]`, []string{"paid-bob"}},
		{"service", `[{control_point: ingress, service: cart}]`, []string{"free-alice", "paid-bob"}},
		{"service any", `[{control_point: ingress, service: any}]`, []string{"anon", "free-alice", "paid-bob"}},
		{"several selectors: any matches", `[{control_point: ingress, label_matcher: {match_labels: {user: alice}}}, {control_point: ingress, label_matcher: {match_labels: {path: /}}}]`, []string{"anon", "free-alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sels := compileSelector(t, tt.sel, policies.DefaultAgentGroup)
			var got []string
			for _, name := range []string{"anon", "free-alice", "paid-bob"} {
				if anyMatch(sels, flows[name]) {
					got = append(got, name)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("matched %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("matched %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestSelectorsOfOtherAgentGroupsAreDropped(t *testing.T) {
	sels := compileSelector(t, `[{control_point: a}, {control_point: b, agent_group: edge}, {control_point: c, agent_group: default}]`, "default")
	if len(sels) != 2 || sels[0].controlPoint != "a" || sels[1].controlPoint != "c" {
		t.Fatalf("selectors for group default = %+v", sels)
	}
	edge := compileSelector(t, `[{control_point: a}, {control_point: b, agent_group: edge}]`, "edge")
	if len(edge) != 1 || edge[0].controlPoint != "b" {
		t.Fatalf("selectors for group edge = %+v", edge)
	}
}

func TestBadRegexIsACompileError(t *testing.T) {
	var sels []policies.Selector
	if err := yaml.Unmarshal([]byte(`[{control_point: a, label_matcher: {expression: {label_matches: {label: x, regex: "("}}}}]`), &sels); err != nil {
		t.Fatal(err)
	}
	if _, err := compileSelectors(sels, "default"); err == nil {
		t.Fatal("a regex that does not compile was accepted")
	}
}
