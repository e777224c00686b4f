package agent

import (
	"fmt"

	"github.com/fluxgate/fluxgate/kube"
)

// KubernetesConfig makes the agent serve Policy and TrafficPolicy custom
// resources beside its policy files (package kube).
type KubernetesConfig struct {
	Enabled       bool   `yaml:"enabled" desc:"Watch Policy and TrafficPolicy custom resources (fluxgate.io/v1beta1) and serve them beside the policy files (TrafficPolicy objects reach the built-in gateway as TrafficPolicy files do). A file policy wins a namespace/name clash (reported in health and fluxgate_policy_name_clashes); the agent is not ready until the first list has arrived."`
	Kubeconfig    string `yaml:"kubeconfig" desc:"Kubeconfig file to reach the API server; empty uses the pod's service account (in-cluster)."`
	Namespace     string `yaml:"namespace" desc:"Namespace whose Policy and TrafficPolicy objects are watched; empty watches all namespaces."`
	LabelSelector string `yaml:"label_selector" desc:"Kubernetes label selector the watched objects must match (such as team=payments); empty matches all."`
}

// kubernetesSource is the policy store's source name for custom resources.
const kubernetesSource = "kubernetes"

// setupKubernetes adds the custom resources as a source of the store when
// kubernetes.enabled is set; Start runs the watch.
func (a *Agent) setupKubernetes() error {
	c := a.cfg.Kubernetes
	if !c.Enabled {
		return nil
	}
	rc, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("agent: kubernetes: %w", err)
	}
	w, err := kube.NewPolicyWatcher(kube.PolicyWatcherOptions{
		Config: rc, Namespace: c.Namespace, LabelSelector: c.LabelSelector, Logger: a.logger,
		Update: func(objs []kube.Object) {
			src := make([]SourceObject, len(objs))
			for i, o := range objs {
				src[i] = SourceObject{ID: o.ID, YAML: o.YAML}
			}
			a.store.SetSource(kubernetesSource, src)
		},
	})
	if err != nil {
		return fmt.Errorf("agent: kubernetes: %w", err)
	}
	a.kube = w
	a.store.AddSource(kubernetesSource)
	a.health.Register("kubernetes", false, func() ComponentHealth {
		synced, n, lastErr := w.Status()
		switch {
		case !synced && lastErr != "":
			return ComponentHealth{Status: StatusUnhealthy, Message: "listing " + w.Describe() + " failed: " + lastErr}
		case !synced:
			return ComponentHealth{Status: StatusUnhealthy, Message: "waiting for the first list of " + w.Describe()}
		case lastErr != "":
			return ComponentHealth{Status: StatusDegraded, Message: fmt.Sprintf("%d objects of %s; watch failing: %s", n, w.Describe(), lastErr)}
		}
		return ComponentHealth{Status: StatusHealthy, Message: fmt.Sprintf("%d objects of %s", n, w.Describe())}
	})
	return nil
}
