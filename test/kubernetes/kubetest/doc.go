// Package kubetest runs a real Kubernetes control plane for tests: an etcd
// (the Debian package etcd-server) and a kube-apiserver built from the Go
// module proxy, both on free 127.0.0.1 ports, with a kubeconfig holding
// cluster-admin credentials (a client certificate in group
// system:masters, signed by a CA generated per cluster).
//
// There is no kubelet, scheduler or controller manager: objects are stored
// and served, CRDs are established, admission and schema validation run,
// but nothing reconciles Pods.
//
// The kube-apiserver and kubectl binaries are built once per pinned release
// (BuildAPIServer, BuildKubectl) into the user cache directory and reused.
// The build module — go.mod and go.sum pinning k8s.io/kubernetes and every
// staging module it needs — is embedded in this package (kubernetes.mod,
// kubernetes.sum), so that the fluxgate module itself does not depend on
// k8s.io/kubernetes.
//
// Start(t) is the test entry point; the command
// `go run ./test/kubernetes/apiserver -kubeconfig PATH` runs the same
// cluster in the foreground for other checks. A Cluster is safe for
// concurrent use; Stop is idempotent.
package kubetest
