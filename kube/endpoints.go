package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// The resources a TargetWatcher reads.
var (
	EndpointSliceResource = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
	ServiceResource       = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	DeploymentResource    = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

// labelServiceName links an EndpointSlice to its Service.
const labelServiceName = "kubernetes.io/service-name"

// Kinds a Ref may name.
const (
	KindService    = "Service"
	KindDeployment = "Deployment"
)

// Ref names a workload whose endpoints are wanted: a Service, or a
// Deployment (through the Services that select its pods).
type Ref struct {
	Namespace, Kind, Name string
}

func (r Ref) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// TargetWatcherOptions configures NewTargetWatcher.
type TargetWatcherOptions struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// Namespace limits the watches to one namespace; empty means all.
	Namespace string
	// Update receives the ready endpoints ("host:port", sorted) of every
	// Ref of the last SetRefs whose Service or Deployment exists, after
	// each change that alters them; a Ref whose object does not exist is
	// left out. It is called from one goroutine, never concurrently.
	// Required.
	Update func(map[Ref][]string)
	// Logger receives watch errors. Nil means silent.
	Logger *slog.Logger
}

// TargetWatcher resolves Refs to the addresses of their ready endpoints
// through EndpointSlices (discovery.k8s.io/v1):
//
//   - a Service's endpoints are those of the EndpointSlices labelled
//     kubernetes.io/service-name with its name;
//   - a Deployment's are those of every Service of its namespace whose
//     selector is not empty and matches the Deployment's pod template
//     labels (a Service that selects more pods than the Deployment's
//     brings their endpoints too);
//   - an endpoint counts while conditions.ready is true or unset, at
//     each of its addresses (IPv4 or IPv6; FQDN slices are skipped), on
//     the slice's TCP port named "http", else its first TCP port.
//
// The watches start with the first non-empty SetRefs. Safe for concurrent
// use; run it with Run.
type TargetWatcher struct {
	opts   TargetWatcherOptions
	client dynamic.Interface
	logger *slog.Logger

	changed chan struct{} // cap 1

	mu   sync.Mutex // guards refs
	refs []Ref
}

// NewTargetWatcher checks the options and builds the client; it does not
// contact the API server.
func NewTargetWatcher(opts TargetWatcherOptions) (*TargetWatcher, error) {
	if opts.Config == nil || opts.Update == nil {
		return nil, errors.New("kube: TargetWatcherOptions needs Config and Update")
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "fluxgate-agent"
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	w := &TargetWatcher{opts: opts, client: client, logger: opts.Logger, changed: make(chan struct{}, 1)}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	return w, nil
}

// SetRefs replaces the workloads to resolve.
func (w *TargetWatcher) SetRefs(refs []Ref) {
	refs = slices.Clone(refs)
	sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
	refs = slices.Compact(refs)
	w.mu.Lock()
	w.refs = refs
	w.mu.Unlock()
	notify(w.changed)
}

// Run watches until ctx is done, calling Update after every change. It
// returns nil when ctx ends.
func (w *TargetWatcher) Run(ctx context.Context) error {
	var stores map[schema.GroupVersionResource]cache.Store
	var wg sync.WaitGroup
	defer wg.Wait()
	var last map[Ref][]string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.changed:
		}
		w.mu.Lock()
		refs := w.refs
		w.mu.Unlock()
		if stores == nil {
			if len(refs) == 0 {
				continue
			}
			var synced []cache.InformerSynced
			stores = map[schema.GroupVersionResource]cache.Store{}
			for _, gvr := range []schema.GroupVersionResource{EndpointSliceResource, ServiceResource, DeploymentResource} {
				inf, err := w.informer(gvr)
				if err != nil {
					return err
				}
				stores[gvr] = inf.GetStore()
				synced = append(synced, inf.HasSynced)
				wg.Go(func() { inf.RunWithContext(ctx) })
			}
			if !cache.WaitForCacheSync(ctx.Done(), synced...) {
				return nil
			}
		}
		cur := resolve(refs, stores)
		if last != nil && sameTargets(last, cur) {
			continue
		}
		last = cur
		w.opts.Update(cur)
	}
}

func (w *TargetWatcher) informer(gvr schema.GroupVersionResource) (cache.SharedIndexInformer, error) {
	res := w.client.Resource(gvr).Namespace(w.opts.Namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if err := inf.SetTransform(slimObject); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	h := func() { notify(w.changed) }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { h() },
		UpdateFunc: func(any, any) { h() },
		DeleteFunc: func(any) { h() },
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		w.logger.Warn("kubernetes: list/watch failed; retrying", "resource", gvr.String(), "err", err)
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return inf, nil
}

// slimObject is the informers' transform: it keeps only what resolve
// reads (metadata but annotations and managed fields, a Deployment's
// template labels, a Service's selector, a slice's address type,
// endpoints and ports), so that a cluster's Deployments are not held
// whole, pod specs included.
func slimObject(o any) (any, error) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return o, nil
	}
	u.SetManagedFields(nil)
	u.SetAnnotations(nil)
	out := map[string]any{}
	for _, k := range []string{"apiVersion", "kind", "metadata", "addressType", "endpoints", "ports"} {
		if v, ok := u.Object[k]; ok {
			out[k] = v
		}
	}
	for _, path := range [][]string{{"spec", "selector"}, {"spec", "template", "metadata", "labels"}} {
		if v, found, _ := unstructured.NestedFieldNoCopy(u.Object, path...); found {
			_ = unstructured.SetNestedField(out, v, path...)
		}
	}
	u.Object = out
	return u, nil
}

// resolve maps each ref whose object exists to the sorted addresses of
// its ready endpoints.
func resolve(refs []Ref, stores map[schema.GroupVersionResource]cache.Store) map[Ref][]string {
	out := make(map[Ref][]string, len(refs))
	for _, r := range refs {
		var services []string
		switch r.Kind {
		case KindService:
			if get(stores[ServiceResource], r.Namespace, r.Name) == nil {
				continue
			}
			services = []string{r.Name}
		case KindDeployment:
			d := get(stores[DeploymentResource], r.Namespace, r.Name)
			if d == nil {
				continue
			}
			podLabels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
			for _, it := range stores[ServiceResource].List() {
				s, ok := it.(*unstructured.Unstructured)
				if !ok || s.GetNamespace() != r.Namespace {
					continue
				}
				sel, _, _ := unstructured.NestedStringMap(s.Object, "spec", "selector")
				if selects(sel, podLabels) {
					services = append(services, s.GetName())
				}
			}
		}
		addrs := []string{}
		for _, it := range stores[EndpointSliceResource].List() {
			es, ok := it.(*unstructured.Unstructured)
			if !ok || es.GetNamespace() != r.Namespace || !slices.Contains(services, es.GetLabels()[labelServiceName]) {
				continue
			}
			addrs = append(addrs, sliceAddresses(es)...)
		}
		sort.Strings(addrs)
		out[r] = slices.Compact(addrs)
	}
	return out
}

func get(s cache.Store, namespace, name string) *unstructured.Unstructured {
	it, ok, err := s.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil
	}
	u, _ := it.(*unstructured.Unstructured)
	return u
}

// selects reports whether a Service selector picks pods labelled labels.
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// sliceAddresses are the host:port of the ready endpoints of one slice.
func sliceAddresses(es *unstructured.Unstructured) []string {
	if t, _, _ := unstructured.NestedString(es.Object, "addressType"); t != "IPv4" && t != "IPv6" {
		return nil
	}
	port := slicePort(es)
	if port == 0 {
		return nil
	}
	eps, _, _ := unstructured.NestedSlice(es.Object, "endpoints")
	var out []string
	for _, e := range eps {
		m, ok := e.(map[string]any)
		if !ok {
			continue
		}
		if ready, found, _ := unstructured.NestedBool(m, "conditions", "ready"); found && !ready {
			continue
		}
		addrs, _, _ := unstructured.NestedStringSlice(m, "addresses")
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a, strconv.FormatInt(port, 10)))
		}
	}
	return out
}

// slicePort is the slice's only port, else its port named http, else its
// first TCP port; 0 if none.
func slicePort(es *unstructured.Unstructured) int64 {
	ports, _, _ := unstructured.NestedSlice(es.Object, "ports")
	var first, http int64
	for _, p := range ports {
		m, ok := p.(map[string]any)
		if !ok {
			continue
		}
		n := integer(m["port"])
		proto, _, _ := unstructured.NestedString(m, "protocol")
		name, _, _ := unstructured.NestedString(m, "name")
		if n == 0 || (proto != "" && proto != "TCP") {
			continue
		}
		if first == 0 {
			first = n
		}
		if name == "http" && http == 0 {
			http = n
		}
	}
	if http != 0 {
		return http
	}
	return first
}

// integer reads a JSON number: int64 as the API machinery decodes it, or
// float64 as encoding/json does.
func integer(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return 0
}

func sameTargets(a, b map[Ref][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}
