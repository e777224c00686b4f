// Package kube connects the agent to a Kubernetes API server: it watches
// FluxGate's custom resources with client-go informers and hands them to
// the policy store as documents, as if they were policy files.
//
// A PolicyWatcher lists and watches Policy objects (fluxgate.io/v1beta1)
// in one namespace or all, filtered by a label selector, and calls its
// Update function with every matching object after each change, the
// first time once the initial list has arrived (even when it is empty).
// Each object becomes one policy document of its apiVersion, kind, name,
// namespace, labels and spec; status and other metadata are not part of
// the policy.
//
// A StatusReporter writes what the agents made of each object into its
// status subresource: one agent of an agent group, the holder of the
// group's coordination.k8s.io Lease (leader election as client-go does
// it, on the dynamic client), writes the conditions Accepted and
// Programmed of its own view, the observedGeneration, and how many live
// agents of the group program that generation, which each agent lists in
// a Lease of its own.
//
// A TargetWatcher resolves the targetRef of TrafficPolicies (a Service,
// or a Deployment through the Services that select its pods) to the
// addresses of their ready endpoints, read from EndpointSlices.
//
// RESTConfig finds the credentials: a kubeconfig file, or the pod's service
// account when run in a cluster.
package kube
