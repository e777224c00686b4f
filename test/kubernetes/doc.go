// Package kubernetes holds end-to-end tests against a real API server
// (package kubetest starts one): the repository's CRDs accept the example
// policies and refuse schema-invalid objects, and an agent with
// kubernetes.enabled serves Policy custom resources beside its files.
package kubernetes
