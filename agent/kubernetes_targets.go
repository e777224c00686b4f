package agent

import (
	"fmt"
	"sort"
	"sync"

	"github.com/fluxgate/fluxgate/kube"
	"github.com/fluxgate/fluxgate/policies"
)

// UpstreamTargeter takes the targets (host:port) of upstream groups
// discovered at run time, by group name; the gateway's Service supplies one.
type UpstreamTargeter interface {
	SetUpstreamTargets(map[string][]string) error
}

// discoveredTargets is the agent's side of targetRef discovery: the
// TrafficPolicies' refs go to the watcher, the watcher's endpoints to the
// gateway.
type discoveredTargets struct {
	watcher *kube.TargetWatcher

	mu      sync.Mutex // guards the fields below
	byGroup map[string][]string
	sink    UpstreamTargeter
	refs    map[kube.Ref]string // upstream group of each ref
}

// SetUpstreamTargeter sends the upstream targets that TrafficPolicies'
// targetRefs resolve to (kubernetes.discovery) to t from now on, the
// current ones at once; nil stops. The gateway calls it when it starts and
// stops.
func (a *Agent) SetUpstreamTargeter(t UpstreamTargeter) {
	d := a.targets
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sink = t
	if t != nil && d.byGroup != nil {
		if err := t.SetUpstreamTargets(d.byGroup); err != nil {
			a.logger.Error("discovered upstream targets refused by the gateway", "err", err)
		}
	}
}

// setupTargetDiscovery resolves the targetRef (Service or Deployment) of
// every TrafficPolicy in the store through EndpointSlices, when
// kubernetes.enabled and kubernetes.discovery are set.
func (a *Agent) setupTargetDiscovery(c KubernetesConfig) error {
	rc, err := kube.RESTConfig(c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("agent: kubernetes: %w", err)
	}
	d := &discoveredTargets{}
	d.watcher, err = kube.NewTargetWatcher(kube.TargetWatcherOptions{
		Config: rc, Namespace: c.Namespace, Logger: a.logger,
		Update: func(eps map[kube.Ref][]string) {
			d.mu.Lock()
			defer d.mu.Unlock()
			byGroup := map[string][]string{}
			for ref, group := range d.refs {
				found, ok := eps[ref]
				if _, dup := byGroup[group]; dup || !ok {
					// Not found: the group keeps its configured targets.
					continue
				}
				byGroup[group] = append([]string{}, found...) // none found: a group with no targets
			}
			d.byGroup = byGroup
			a.logger.Info("upstream targets discovered", "groups", len(byGroup))
			if d.sink != nil {
				if err := d.sink.SetUpstreamTargets(byGroup); err != nil {
					a.logger.Error("discovered upstream targets refused by the gateway", "err", err)
				}
			}
		},
	})
	if err != nil {
		return fmt.Errorf("agent: kubernetes: %w", err)
	}
	a.targets = d
	a.store.Subscribe(func(_, cur *PolicySnapshot) {
		refs, list := targetRefs(cur)
		d.mu.Lock()
		d.refs = refs
		d.mu.Unlock()
		d.watcher.SetRefs(list)
	})
	return nil
}

// targetRefs are the Service and Deployment targetRefs of cur's
// TrafficPolicies, with the upstream group of each, and as a sorted list.
// Of the TrafficPolicies naming one upstream group only the first by
// namespace/name counts, as in the gateway, which refuses the others.
func targetRefs(cur *PolicySnapshot) (map[kube.Ref]string, []kube.Ref) {
	refs := map[kube.Ref]string{}
	var list []kube.Ref
	groups := map[string]bool{}
	for _, e := range cur.Sorted() {
		tp, ok := e.Object.(*policies.TrafficPolicy)
		if !ok {
			continue
		}
		tr := tp.Spec.TargetRef
		if groups[tr.Name] {
			continue
		}
		groups[tr.Name] = true
		if tr.Kind != kube.KindService && tr.Kind != kube.KindDeployment {
			continue
		}
		r := kube.Ref{Namespace: tp.Key().Namespace, Kind: tr.Kind, Name: tr.Name}
		refs[r] = tr.Name
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].String() < list[j].String() })
	return refs, list
}
