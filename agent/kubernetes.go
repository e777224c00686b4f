package agent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fluxgate/fluxgate/kube"
	"github.com/fluxgate/fluxgate/policies"
)

// KubernetesConfig makes the agent serve Policy and TrafficPolicy custom
// resources beside its policy files (package kube).
type KubernetesConfig struct {
	Enabled          bool   `yaml:"enabled" desc:"Watch Policy and TrafficPolicy custom resources (fluxgate.io/v1beta1) and serve them beside the policy files (TrafficPolicy objects reach the built-in gateway as TrafficPolicy files do). A file policy wins a namespace/name clash (reported in health and fluxgate_policy_name_clashes); the agent is not ready until the first list has arrived."`
	Kubeconfig       string `yaml:"kubeconfig" desc:"Kubeconfig file to reach the API server; empty uses the pod's service account (in-cluster)."`
	Namespace        string `yaml:"namespace" desc:"Namespace whose Policy and TrafficPolicy objects are watched; empty watches all namespaces."`
	LabelSelector    string `yaml:"label_selector" desc:"Kubernetes label selector the watched objects must match (such as team=payments); empty matches all."`
	Status           bool   `yaml:"status" desc:"Write the objects' status (conditions Accepted and Programmed, observedGeneration, agents.total and agents.programmed): one agent of the agent group, the holder of the Lease fluxgate-<agent_group>, writes it; every agent renews a Lease of its own that lists what it programs. Needs the leases and */status rights of deploy/kubernetes/rbac.yaml."`
	Discovery        bool   `yaml:"discovery" desc:"Resolve the targetRef of every TrafficPolicy whose kind is Service or Deployment through EndpointSlices to the ready endpoints, which replace the targets of the gateway upstream group named targetRef.name while the Service or Deployment exists (its configured targets serve otherwise; a Deployment's endpoints are those of the Services of its namespace that select its pod template's labels). Needs get/list/watch on services, endpointslices and deployments."`
	AperturePolicies bool   `yaml:"aperture_policies" desc:"Also watch FluxNinja Aperture's Policy custom resources (fluxninja.com/v1alpha1, the CRD Aperture's operator installed) and serve them translated as Aperture policy files are; their status.status says what the agent group made of them. Objects with dynamicConfig are refused. Needs get/list/watch (and patch of status) on policies.fluxninja.com."`
	LeaseNamespace   string `yaml:"lease_namespace" desc:"Namespace of the Leases (kubernetes.status); empty means the pod's namespace (default outside a pod)."`
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
	if c.Status {
		r, err := kube.NewStatusReporter(kube.StatusReporterOptions{
			Config: rc, Group: a.cfg.Agent.AgentGroup, Namespace: c.LeaseNamespace,
			Logger: a.logger, Registerer: a.registry,
		})
		if err != nil {
			return fmt.Errorf("agent: kubernetes: %w", err)
		}
		a.kubeStatus = r
		a.store.Subscribe(func(_, _ *PolicySnapshot) { a.refreshKubeView() })
	}
	resources := kube.Resources
	if c.AperturePolicies {
		resources = append(slices.Clip(resources), kube.AperturePolicyResource)
	}
	w, err := kube.NewPolicyWatcher(kube.PolicyWatcherOptions{
		Config: rc, Namespace: c.Namespace, LabelSelector: c.LabelSelector, Logger: a.logger, Resources: resources,
		Update: func(objs []kube.Object) {
			src := make([]SourceObject, len(objs))
			for i, o := range objs {
				src[i] = SourceObject{ID: o.ID, YAML: o.YAML}
			}
			a.kubeMu.Lock()
			a.kubeObjs = objs
			a.kubeMu.Unlock()
			a.store.SetSource(kubernetesSource, src)
			a.refreshKubeView() // a status or generation change alone changes no snapshot
		},
	})
	if err != nil {
		return fmt.Errorf("agent: kubernetes: %w", err)
	}
	a.kube = w
	if c.Discovery {
		if err := a.setupTargetDiscovery(c); err != nil {
			return err
		}
	}
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

// refreshKubeView hands the status reporter this agent's view of the
// watched objects: programmed when the store serves the object, conflicted
// when another policy holds its namespace/name, else invalid with the
// store's errors for it.
func (a *Agent) refreshKubeView() {
	if a.kubeStatus == nil {
		return
	}
	a.kubeMu.Lock()
	defer a.kubeMu.Unlock()
	a.kubeStatus.SetView(kubeView(a.kubeObjs, a.store.Snapshot()))
}

func kubeView(objs []kube.Object, snap *PolicySnapshot) []kube.ObjectView {
	errs := map[string][]string{}
	for _, fe := range snap.Errors {
		errs[fe.File] = append(errs[fe.File], fe.Err.Error())
	}
	out := make([]kube.ObjectView, 0, len(objs))
	for _, o := range objs {
		v := kube.ObjectView{Object: o, State: kube.StateProgrammed}
		e := snap.Entries[policies.Key{Namespace: o.Namespace, Name: o.Name}]
		switch {
		case e != nil && e.File == o.ID:
			v.Warnings = strings.Join(e.Warnings, "\n")
		case e != nil:
			v.State, v.Message = kube.StateConflicted, strings.Join(errs[o.ID], "\n")
		default:
			v.State, v.Message = kube.StateInvalid, strings.Join(errs[o.ID], "\n")
			if v.Message == "" {
				v.Message = "not served by the agent's policy store"
			}
		}
		out = append(out, v)
	}
	return out
}

// KubernetesStatus is the writer of the custom resources' status; nil
// unless kubernetes.enabled and kubernetes.status.
func (a *Agent) KubernetesStatus() *kube.StatusReporter { return a.kubeStatus }
