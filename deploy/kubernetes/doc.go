// Package kubernetes holds no code: its directory holds the Kubernetes
// manifests that run the FluxGate agent as a DaemonSet (kubectl apply -k
// deploy/kubernetes), and its tests decode every manifest strictly into
// the Kubernetes API types, check them against the agent's defaults, and
// keep the Policy and TrafficPolicy CRDs' OpenAPI schemas equal to what
// is generated from the Go types of package policies
// (go test ./deploy/kubernetes -update rewrites them).
package kubernetes
