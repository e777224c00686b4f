// Package classifier computes flow labels at a control point from a
// policy's classifier resource (policies.Classifier), so that selectors
// and rate limiters further down the chain can use them.
//
// New compiles a classifier once, when its policy is loaded; everything
// that can be wrong with it (extractor syntax, path templates, a Rego
// module that does not compile or calls a forbidden builtin) is reported
// there, and the agent then keeps the policy's last good version.
// Classify runs at every check; a *Classifier is immutable and safe for
// concurrent use. The zero Classifier is not usable: call New.
//
// Flow labels are a flat map of strings. HTTP adapters set http.method,
// http.target (path?query), http.host, http.scheme,
// http.request.header.<name> (lower case, '-' written '_'),
// source.address and the W3C baggage entries; other control points set
// whatever their adapter or SDK caller passes. Nothing here depends on
// HTTP except the default source of path templates.
//
// # Extractor rules
//
// Each rule computes one label with one extractor:
//
//	from: LABEL                           copy a flow label
//	json: {from: LABEL, pointer: /a/b}    a value in a JSON document
//	address: {from: LABEL}                the IP of "ip:port" or an IP
//	path_templates:                       the value of the most specific
//	  from: LABEL                         template matching the path
//	  template_values: {"/users/{id}": users, "/api/*": api}
//
// A source label that is absent, a JSON pointer that selects nothing, or a
// path that no template matches gives no label and no error. A source that
// is present but cannot be read (malformed JSON, an address that is not
// one) gives no label and an error naming the rule. JSON strings are used
// as they are, other JSON values as their compact JSON text (numbers keep
// their text: 1.50 stays "1.50"; null becomes "null"). Path templates see
// the path with its query and fragment removed and empty segments ignored;
// segments are compared without percent-decoding. See
// policies.PathTemplateMatcher for template syntax and precedence.
//
// # Rego
//
// A rego classifier's module (Rego v1) is parsed and compiled at New, and
// one query is prepared that reads every listed label from the module's
// package: label "tier" is the value of rule tier, label "user.kind" that
// of rule user.kind. Every label must name a rule of the module. A label
// whose rule is undefined for a flow gives no label; a value that is not a
// string is converted: numbers and booleans to their text, anything else
// to JSON. The input document is
//
//	{"control_point": "ingress", "labels": {"http.method": "GET", ...}}
//
// where labels are the flow's labels as the classifier receives them (the
// classifier's own extractor rules do not see each other's output, nor
// does Rego see theirs).
//
// Rego classifiers run on the check path, so they are sandboxed: builtins
// that do I/O or are not deterministic (http.send, net.lookup_ip_addr,
// opa.runtime, time.now_ns, rand.intn, uuid.rfc4122, JWT signing and
// verification that reads the clock, and the like) are not available, and
// a module that calls one fails New. Builtin errors are strict: a builtin
// that fails (to_number("x")) is an error, not an undefined value. The
// Rego evaluations of one check share one RegoTimeout (the engine gives
// each check a WithBudget context; a lone Classify gets it whole), or the
// caller's earlier deadline: a module that starts once the budget is
// spent is not evaluated. An evaluation error, such as a complete rule with conflicting
// values, makes Classify return the error and no Rego labels.
package classifier
