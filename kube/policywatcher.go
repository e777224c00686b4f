package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// The custom resources the watcher serves as policy documents: Policy,
// and TrafficPolicy (seed 003's per-Deployment routing, rate limit and
// canary, which the built-in gateway compiles).
var (
	PolicyResource        = schema.GroupVersionResource{Group: "fluxgate.io", Version: "v1beta1", Resource: "policies"}
	TrafficPolicyResource = schema.GroupVersionResource{Group: "fluxgate.io", Version: "v1beta1", Resource: "trafficpolicies"}
	// AperturePolicyResource is FluxNinja Aperture's Policy custom
	// resource, whose spec is Aperture's policy language: the agent
	// translates it as it does an Aperture policy file.
	AperturePolicyResource = schema.GroupVersionResource{Group: "fluxninja.com", Version: "v1alpha1", Resource: "policies"}
)

// Resources are what a PolicyWatcher watches by default.
var Resources = []schema.GroupVersionResource{PolicyResource, TrafficPolicyResource}

// Object is one custom resource as a policy document.
type Object struct {
	// ID is "kubernetes:<resource>.<group>/<namespace>/<name>", for
	// example kubernetes:policies.fluxgate.io/default/checkout.
	ID string
	// YAML is the policy document: apiVersion, kind, metadata (name,
	// namespace, labels) and spec.
	YAML []byte
	// Resource, Namespace, Name, UID and Generation identify the object
	// and the version of its spec that YAML holds.
	Resource   schema.GroupVersionResource
	Namespace  string
	Name       string
	UID        string
	Generation int64
	// Status is the object's status as the API server last sent it (nil
	// when it has none); a StatusReporter compares it with what it would
	// write.
	Status map[string]any
}

// RESTConfig returns the client configuration of a kubeconfig file, or,
// when kubeconfig is empty, of the pod the process runs in (its service
// account token and the KUBERNETES_SERVICE_HOST/PORT environment).
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kube: in-cluster configuration (set kubernetes.kubeconfig when not in a pod): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kube: kubeconfig %s: %w", kubeconfig, err)
	}
	return cfg, nil
}

// PolicyWatcherOptions configures NewPolicyWatcher.
type PolicyWatcherOptions struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// Namespace limits the watch to one namespace; empty means all.
	Namespace string
	// LabelSelector filters the objects (Kubernetes label selector
	// syntax, such as "team=payments,tier!=test"); empty means all.
	LabelSelector string
	// Update receives every matching object, sorted by ID, after each
	// change. It is called from one goroutine, never concurrently.
	// Required.
	Update func([]Object)
	// Logger receives watch errors and refused objects. Nil means silent.
	Logger *slog.Logger
	// Resources to watch; nil means Resources (Policy and TrafficPolicy).
	Resources []schema.GroupVersionResource
}

// PolicyWatcher watches Policy custom resources. Create it with
// NewPolicyWatcher and start it with Run; Synced and Health are safe for
// concurrent use.
type PolicyWatcher struct {
	opts   PolicyWatcherOptions
	client dynamic.Interface
	logger *slog.Logger

	mu       sync.Mutex // guards the fields below
	synced   bool
	objects  int
	watchErr string // the last list/watch error, cleared by the next update
}

// NewPolicyWatcher checks the options and builds the client; it does not
// contact the API server.
func NewPolicyWatcher(opts PolicyWatcherOptions) (*PolicyWatcher, error) {
	if opts.Config == nil || opts.Update == nil {
		return nil, errors.New("kube: PolicyWatcherOptions needs Config and Update")
	}
	if _, err := labels.Parse(opts.LabelSelector); err != nil {
		return nil, fmt.Errorf("kube: label selector %q: %w", opts.LabelSelector, err)
	}
	cfg := rest.CopyConfig(opts.Config)
	if cfg.UserAgent == "" {
		cfg.UserAgent = "fluxgate-agent"
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if opts.Resources == nil {
		opts.Resources = Resources
	}
	w := &PolicyWatcher{opts: opts, client: client, logger: opts.Logger}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	return w, nil
}

// Run lists and watches until ctx is done. Update is first called once the
// initial list has arrived; until then the watcher is not Synced. An API
// server that cannot be reached, or that does not know the Policy
// resource (CRD not installed), is retried with backoff and reported by
// Health. Run returns nil when ctx ends.
func (w *PolicyWatcher) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default: // an update is pending already; it will read the newest objects
		}
	}
	var stores []resourceStore
	var synced []cache.InformerSynced
	var wg sync.WaitGroup
	defer wg.Wait() // the informers stop when ctx ends
	for _, gvr := range w.opts.Resources {
		inf, err := w.informer(gvr, notify)
		if err != nil {
			return err
		}
		stores = append(stores, resourceStore{gvr, inf.GetStore()})
		synced = append(synced, inf.HasSynced)
		wg.Add(1)
		go func() {
			defer wg.Done()
			inf.RunWithContext(ctx)
		}()
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil // ctx ended first
	}
	w.update(stores)
	w.mu.Lock()
	w.synced = true
	w.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			w.update(stores)
		}
	}
}

// resourceStore is an informer's cache of one resource.
type resourceStore struct {
	gvr   schema.GroupVersionResource
	store cache.Store
}

// informer lists and watches one resource, calling notify on every change.
func (w *PolicyWatcher) informer(gvr schema.GroupVersionResource, notify func()) (cache.SharedIndexInformer, error) {
	// A plain informer on the dynamic client: dynamicinformer would link
	// every typed informer and clientset of client-go (about 370
	// packages, 21 MB of agent binary) for its GenericInformer type.
	res := w.client.Resource(gvr).Namespace(w.opts.Namespace) // "" is every namespace
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = w.opts.LabelSelector
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = w.opts.LabelSelector
			return res.Watch(ctx, o)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, &unstructured.Unstructured{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		msg := watchErrorText(gvr, err)
		w.mu.Lock()
		w.watchErr = gvr.GroupResource().String() + ": " + msg
		w.mu.Unlock()
		w.logger.Warn("kubernetes: list/watch failed; retrying", "resource", gvr.String(), "err", msg)
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return inf, nil
}

// crdManifests names, per watched resource, the manifest in this
// repository that defines its CustomResourceDefinition.
var crdManifests = map[schema.GroupVersionResource]string{
	PolicyResource:         "deploy/kubernetes/crd-policy.yaml",
	TrafficPolicyResource:  "deploy/kubernetes/crd-trafficpolicy.yaml",
	AperturePolicyResource: "deploy/kubernetes/aperture/crd-aperture-policy.yaml",
}

// watchErrorText is a list/watch error in the user's words: the API
// server's "could not find the requested resource" for a resource it
// does not serve means its CustomResourceDefinition is not installed,
// which the text then says, with the manifest that installs it.
func watchErrorText(gvr schema.GroupVersionResource, err error) string {
	if !apierrors.IsNotFound(err) {
		return err.Error()
	}
	msg := err.Error() + ": the API server does not serve " + gvr.GroupResource().String() + " (" + gvr.GroupVersion().String() + "); install its CustomResourceDefinition"
	if m, ok := crdManifests[gvr]; ok {
		msg += " (kubectl apply -f " + m + ")"
	}
	if gvr == AperturePolicyResource {
		msg += " or set kubernetes.aperture_policies: false"
	}
	return msg
}

func (w *PolicyWatcher) update(stores []resourceStore) {
	var objs []Object
	for _, rs := range stores {
		for _, it := range rs.store.List() {
			u, ok := it.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			o, err := policyDocument(rs.gvr, u)
			if err != nil {
				w.logger.Error("kubernetes: object not readable; ignored", "resource", rs.gvr.String(), "namespace", u.GetNamespace(), "name", u.GetName(), "err", err)
				continue
			}
			objs = append(objs, o)
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].ID < objs[j].ID })
	w.mu.Lock()
	w.objects, w.watchErr = len(objs), ""
	w.mu.Unlock()
	w.opts.Update(objs)
}

// policyDocument turns a custom resource of gvr into a policy document.
func policyDocument(gvr schema.GroupVersionResource, u *unstructured.Unstructured) (Object, error) {
	meta := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace()}
	if l := u.GetLabels(); len(l) > 0 {
		meta["labels"] = l
	}
	doc := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": meta}
	if spec, ok := u.Object["spec"]; ok {
		doc["spec"] = spec
	}
	if dc, ok := u.Object["dynamicConfig"]; ok && gvr == AperturePolicyResource {
		// Aperture's per-object overrides of the policy's values (FluxGate's
		// come through /v1/dynamic-config): handed on, so that the policy
		// store refuses the object with a positioned error, which its
		// status then shows.
		doc["dynamicConfig"] = dc
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return Object{}, err
	}
	id := "kubernetes:" + gvr.GroupResource().String() + "/" + u.GetNamespace() + "/" + u.GetName()
	st, _ := u.Object["status"].(map[string]any)
	return Object{ID: id, YAML: data, Resource: gvr, Namespace: u.GetNamespace(), Name: u.GetName(),
		UID: string(u.GetUID()), Generation: u.GetGeneration(), Status: st}, nil
}

// Synced reports whether the initial list has arrived.
func (w *PolicyWatcher) Synced() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.synced
}

// Status describes the watch for health reports: whether it has synced,
// how many objects it holds, and the last list/watch error since the last
// update ("" if none).
func (w *PolicyWatcher) Status() (synced bool, objects int, lastErr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.synced, w.objects, w.watchErr
}

// Describe names what is watched, for logs: resource, namespace, selector.
func (w *PolicyWatcher) Describe() string {
	ns := w.opts.Namespace
	if ns == "" {
		ns = "all namespaces"
	}
	var names []string
	for _, r := range w.opts.Resources {
		names = append(names, r.GroupResource().String())
	}
	s := fmt.Sprintf("%s in %s", strings.Join(names, " and "), ns)
	if w.opts.LabelSelector != "" {
		s += " matching " + w.opts.LabelSelector
	}
	return s
}
