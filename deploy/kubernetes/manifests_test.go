package kubernetes

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	promconfig "github.com/prometheus/prometheus/config"
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // registers kubernetes_sd_configs

	"github.com/fluxgate/fluxgate"
	"github.com/fluxgate/fluxgate/agent"
	"github.com/fluxgate/fluxgate/policies"

	_ "github.com/fluxgate/fluxgate/circuit" // registers the circuit component kinds
)

var update = flag.Bool("update", false, "rewrite the generated CRD files")

// manifests holds every object of every manifest file, decoded strictly
// into its Kubernetes API type.
type manifests struct {
	daemonSets      []*appsv1.DaemonSet
	configMaps      map[string]*corev1.ConfigMap
	services        []*corev1.Service
	serviceAccounts map[string]*corev1.ServiceAccount
	namespaces      []*corev1.Namespace
	crds            map[string]*apiextensionsv1.CustomResourceDefinition
	priorityClasses map[string]*schedulingv1.PriorityClass
	clusterRoles    map[string]*rbacv1.ClusterRole
	bindings        []*rbacv1.ClusterRoleBinding
	files           []string
}

// load decodes every *.yaml of the directory except kustomization.yaml.
// A document of a kind the test does not know, or with a field its type
// lacks, fails the test.
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{
		configMaps:      map[string]*corev1.ConfigMap{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		crds:            map[string]*apiextensionsv1.CustomResourceDefinition{},
		priorityClasses: map[string]*schedulingv1.PriorityClass{},
		clusterRoles:    map[string]*rbacv1.ClusterRole{},
	}
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(data) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			var obj any
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 DaemonSet":
				ds := &appsv1.DaemonSet{}
				m.daemonSets, obj = append(m.daemonSets, ds), ds
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Service":
				s := &corev1.Service{}
				m.services, obj = append(m.services, s), s
			case "v1 ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "v1 Namespace":
				ns := &corev1.Namespace{}
				m.namespaces, obj = append(m.namespaces, ns), ns
			case "apiextensions.k8s.io/v1 CustomResourceDefinition":
				obj = &apiextensionsv1.CustomResourceDefinition{}
			case "scheduling.k8s.io/v1 PriorityClass":
				obj = &schedulingv1.PriorityClass{}
			case "rbac.authorization.k8s.io/v1 ClusterRole":
				obj = &rbacv1.ClusterRole{}
			case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
				b := &rbacv1.ClusterRoleBinding{}
				m.bindings, obj = append(m.bindings, b), b
			case "rbac.authorization.k8s.io/v1 Role":
				obj = &rbacv1.Role{}
			case "rbac.authorization.k8s.io/v1 RoleBinding":
				obj = &rbacv1.RoleBinding{}
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i, tm.APIVersion, tm.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i, tm.Kind, err)
			}
			switch o := obj.(type) {
			case *corev1.ConfigMap:
				m.configMaps[o.Name] = o
			case *corev1.ServiceAccount:
				m.serviceAccounts[o.Name] = o
			case *apiextensionsv1.CustomResourceDefinition:
				m.crds[f] = o
			case *schedulingv1.PriorityClass:
				m.priorityClasses[o.Name] = o
			case *rbacv1.ClusterRole:
				m.clusterRoles[o.Name] = o
			}
			clusterScoped := tm.Kind == "Namespace" || tm.Kind == "CustomResourceDefinition" || tm.Kind == "PriorityClass" ||
				tm.Kind == "ClusterRole" || tm.Kind == "ClusterRoleBinding"
			if om, ok := obj.(metav1.Object); ok && !clusterScoped && om.GetNamespace() != "fluxgate" {
				t.Errorf("%s: %s %s is in namespace %q, want fluxgate", f, tm.Kind, om.GetName(), om.GetNamespace())
			}
		}
	}
	return m
}

func splitDocuments(data []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			out = append(out, d)
		}
	}
	return out
}

func stripComments(b []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
			out = append(out, '\n')
		}
	}
	return out
}

// agentConfig loads the fluxgate.yaml of the fluxgate-config ConfigMap
// with fluxgate.Load, with the DaemonSet's FLUXGATE_* variables.
func agentConfig(t *testing.T, m *manifests, c corev1.Container) agent.Config {
	t.Helper()
	cm := m.configMaps["fluxgate-config"]
	if cm == nil || cm.Data["fluxgate.yaml"] == "" {
		t.Fatal("no ConfigMap fluxgate-config with a fluxgate.yaml key")
	}
	path := filepath.Join(t.TempDir(), "fluxgate.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["fluxgate.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	var environ []string
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, agent.EnvPrefix) {
			continue
		}
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil {
			// What the kubelet sets: the container's resource in units
			// of the divisor, rounded up.
			ref := e.ValueFrom.ResourceFieldRef
			q, ok := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(ref.Resource, "limits."))]
			if !ok || ref.Divisor.IsZero() {
				t.Fatalf("%s: from %s, which the container does not set (or no divisor)", e.Name, ref.Resource)
			}
			v = strconv.FormatInt((q.Value()+ref.Divisor.Value()-1)/ref.Divisor.Value(), 10)
		}
		environ = append(environ, e.Name+"="+v)
	}
	cfg, warnings, err := fluxgate.Load(path, environ)
	if err != nil {
		t.Fatalf("fluxgate-config fluxgate.yaml: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("fluxgate.yaml warnings: %v", warnings)
	}
	return cfg.Config
}

// TestDaemonSet checks the agent's pod against the agent's config: the
// container ports are the config's (which are the defaults), the probes
// hit /livez and /readyz on the probe port, resources are bounded, and the
// config and policies ConfigMaps are mounted where the config says.
func TestDaemonSet(t *testing.T) {
	m := load(t)
	if len(m.daemonSets) != 1 {
		t.Fatalf("%d DaemonSets, want 1", len(m.daemonSets))
	}
	ds := m.daemonSets[0]
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	cfg := agentConfig(t, m, c)
	if lim, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || int64(cfg.Limits.MemoryMiB) != lim.Value()>>20 {
		t.Errorf("limits.memory_mib %d, want the container's memory limit in MiB (%v)", cfg.Limits.MemoryMiB, c.Resources.Limits.Memory())
	}
	def := agent.DefaultConfig()

	if want := []string{"agent", "--config", "/etc/fluxgate/config/fluxgate.yaml"}; !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	ports := checkContainerPorts(t, c, cfg)
	if pc := m.priorityClasses[pod.PriorityClassName]; pod.PriorityClassName == "" || pc == nil || pc.Value < 1_000_000 || pc.GlobalDefault {
		t.Errorf("priorityClassName %q (%+v): want a PriorityClass of the manifests, high (the agent decides for every pod of its node), not the global default", pod.PriorityClassName, pc)
	}
	if !cfg.Metrics.Enabled || cfg.Metrics.Path != def.Metrics.Path {
		t.Errorf("metrics %+v, want enabled on %s", cfg.Metrics, def.Metrics.Path)
	}
	if cfg.Server.Host != "0.0.0.0" {
		t.Errorf("server.host %q: the probes and the Service need the agent on every interface", cfg.Server.Host)
	}
	checkTokensFromSecrets(t, c, cfg)
	checkProbes(t, c, cfg, ports)
	checkResources(t, c)
	checkMounts(t, m, pod, cfg)
	checkAPIAccess(t, m, ds, cfg)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("selector %v: %v", ds.Spec.Selector, err)
	}
	if !selectorMatches(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
	}
	checkService(t, m, ds, ports)
}

// The check… functions below are TestDaemonSet's parts. They do not call
// t.Helper, so that a failure names the line of the check that failed.

// checkContainerPorts checks the container's ports: the config's
// listeners (which must keep the defaults) and the probe port, each once,
// no hostPort but the containerPort, and none on the OTLP ports. It
// returns the container ports by name.
func checkContainerPorts(t *testing.T, c corev1.Container, cfg agent.Config) map[string]int32 {
	def := agent.DefaultConfig()
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
		if p.HostPort != 0 && p.HostPort != p.ContainerPort {
			t.Errorf("port %s: hostPort %d differs from containerPort %d", p.Name, p.HostPort, p.ContainerPort)
		}
		// An OpenTelemetry Collector DaemonSet takes hostPorts 4317 and
		// 4318 on the same nodes: the agent's OTLP ports are reached
		// through the node-local Service (or spans go to the check port).
		if (p.Name == "otlp-grpc" || p.Name == "otlp-http") && p.HostPort != 0 {
			t.Errorf("port %s has hostPort %d: it clashes with an OpenTelemetry Collector DaemonSet", p.Name, p.HostPort)
		}
	}
	for _, p := range []struct {
		name       string
		cfg, deflt int
	}{
		{"http", cfg.Server.HTTPPort, def.Server.HTTPPort},
		{"grpc", cfg.Server.GRPCPort, def.Server.GRPCPort},
		{"metrics", cfg.Metrics.Port, def.Metrics.Port},
		{"otlp-grpc", cfg.OTLP.GRPCPort, def.OTLP.GRPCPort},
		{"otlp-http", cfg.OTLP.HTTPPort, def.OTLP.HTTPPort},
	} {
		if got := ports[p.name]; int(got) != p.cfg || p.cfg != p.deflt {
			t.Errorf("port %s: container %d, config %d, default %d; want all equal", p.name, got, p.cfg, p.deflt)
		}
	}
	if cfg.Server.ProbePort == 0 || ports["probe"] != int32(cfg.Server.ProbePort) {
		t.Errorf("probe port: container %d, config server.probe_port %d; want a probe listener and its container port", ports["probe"], cfg.Server.ProbePort)
	}
	if len(ports) != 6 {
		t.Errorf("container ports %v, want exactly http, grpc, metrics, probe, otlp-grpc, otlp-http", ports)
	}
	return ports
}

// checkTokensFromSecrets checks that no token sits in the manifests and
// that each can come from its optional Secret.
func checkTokensFromSecrets(t *testing.T, c corev1.Container, cfg agent.Config) {
	// The admin token never sits in a manifest: the admin API stays off
	// (403) unless the optional Secret fluxgate-admin provides one.
	if cfg.Admin.Token != "" {
		t.Error("admin.token is set in the manifests; it belongs in the Secret fluxgate-admin")
	}
	// So do the check and OTLP tokens (issue 14), from their own
	// optional Secrets: without them those surfaces stay open.
	if cfg.Check.Token != "" || cfg.OTLP.Token != "" {
		t.Error("check.token or otlp.token is set in the manifests; they belong in the Secrets fluxgate-check and fluxgate-otlp")
	}
	for _, want := range []struct{ env, secret string }{
		{"FLUXGATE_ADMIN_TOKEN", "fluxgate-admin"},
		{"FLUXGATE_CHECK_TOKEN", "fluxgate-check"},
		{"FLUXGATE_OTLP_TOKEN", "fluxgate-otlp"},
	} {
		var tokenFromSecret bool
		for _, e := range c.Env {
			if e.Name != want.env {
				continue
			}
			var ref *corev1.SecretKeySelector
			if e.ValueFrom != nil {
				ref = e.ValueFrom.SecretKeyRef
			}
			if e.Value != "" || ref == nil || ref.Name != want.secret || ref.Key != "token" || ref.Optional == nil || !*ref.Optional {
				t.Errorf("%s %+v, want it from the optional Secret %s key token", want.env, e, want.secret)
			}
			tokenFromSecret = true
		}
		if !tokenFromSecret {
			t.Errorf("no %s from the Secret %s: the token could not be set without editing the DaemonSet", want.env, want.secret)
		}
	}
}

// checkProbes checks that the liveness and readiness probes GET /livez
// and /readyz over plain HTTP on the config's probe port.
func checkProbes(t *testing.T, c corev1.Container, cfg agent.Config, ports map[string]int32) {
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/livez"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", pr.name)
			continue
		}
		g := pr.probe.HTTPGet
		port := g.Port.IntVal
		if g.Port.StrVal != "" {
			port = ports[g.Port.StrVal]
		}
		if g.Path != pr.path || int(port) != cfg.Server.ProbePort || g.Scheme == corev1.URISchemeHTTPS {
			t.Errorf("%s probe %s %s on port %v (%d), want %s over plain HTTP on the probe port %d", pr.name, g.Scheme, g.Path, g.Port.String(), port, pr.path, cfg.Server.ProbePort)
		}
	}
}

// checkResources checks that CPU and memory have a request and a limit,
// the request no higher.
func checkResources(t *testing.T, c corev1.Container) {
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %s, limit %s; want both set, request ≤ limit", res, req.String(), lim.String())
		}
	}
}

// checkMounts checks the volumes: the config file and the policies
// directory come from the ConfigMaps, each mounted whole.
func checkMounts(t *testing.T, m *manifests, pod corev1.PodSpec, cfg agent.Config) {
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounted := map[string]string{} // mount path → ConfigMap
	for _, vm := range pod.Containers[0].VolumeMounts {
		v, ok := volumes[vm.Name]
		if !ok {
			t.Errorf("mount %s: no volume %s", vm.MountPath, vm.Name)
			continue
		}
		if v.ConfigMap != nil {
			if m.configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("volume %s: no ConfigMap %s in the manifests", v.Name, v.ConfigMap.Name)
			}
			mounted[vm.MountPath] = v.ConfigMap.Name
			if vm.SubPath != "" {
				mounted[vm.MountPath] += "/" + vm.SubPath
			}
		}
	}
	if got := mounted["/etc/fluxgate/config"]; got != "fluxgate-config" {
		t.Errorf("/etc/fluxgate/config comes from %q, want ConfigMap fluxgate-config mounted whole (so that updates arrive and the agent reloads them)", got)
	}
	if got := mounted[cfg.Policies.Dir]; got != "fluxgate-policies" {
		t.Errorf("policies.dir %s is mounted from %q, want ConfigMap fluxgate-policies (mounted whole, so that updates arrive)", cfg.Policies.Dir, got)
	}
}

// checkAPIAccess checks the pod's service account. With
// kubernetes.enabled the agent lists and watches its custom resources with
// it: the token is mounted and a ClusterRole bound to the account grants
// exactly that.
func checkAPIAccess(t *testing.T, m *manifests, ds *appsv1.DaemonSet, cfg agent.Config) {
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName == "" || m.serviceAccounts[pod.ServiceAccountName] == nil {
		t.Errorf("serviceAccountName %q is not in the manifests", pod.ServiceAccountName)
	}
	if !cfg.Kubernetes.Enabled {
		return
	}
	sa := m.serviceAccounts[pod.ServiceAccountName]
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken || sa == nil || sa.AutomountServiceAccountToken == nil || !*sa.AutomountServiceAccountToken {
		t.Error("kubernetes.enabled, but the pod does not get its service account token")
	}
	granted := listWatchGrants(t, m, ds.Namespace, pod.ServiceAccountName)
	if !granted["policies"] || !granted["trafficpolicies"] {
		t.Errorf("kubernetes.enabled, but the service account may list and watch only %v of policies and trafficpolicies (fluxgate.io)", granted)
	}
}

// listWatchGrants returns the fluxgate.io resources that the ClusterRoles
// bound to the service account may list and watch; a rule of theirs that
// also grants more than reading fails the test.
func listWatchGrants(t *testing.T, m *manifests, namespace, account string) map[string]bool {
	granted := map[string]bool{}
	for _, b := range m.bindings {
		bound := false
		for _, s := range b.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == account && s.Namespace == namespace)
		}
		role := m.clusterRoles[b.RoleRef.Name]
		if !bound || b.RoleRef.Kind != "ClusterRole" || role == nil {
			continue
		}
		for _, r := range role.Rules {
			if !slices.Contains(r.APIGroups, "fluxgate.io") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			for _, res := range r.Resources {
				granted[res] = true
			}
			if slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
				t.Errorf("ClusterRole %s grants %v: the agent only reads", role.Name, r.Verbs)
			}
		}
	}
	return granted
}

// checkService checks that the Service reaches the named container ports
// of the DaemonSet's pods, on the same port numbers, on the local node
// only.
func checkService(t *testing.T, m *manifests, ds *appsv1.DaemonSet, ports map[string]int32) {
	if len(m.services) != 1 {
		t.Fatalf("%d Services, want 1", len(m.services))
	}
	svc := m.services[0]
	if !selectorMatches(svc.Spec.Selector, ds.Spec.Template.Labels) {
		t.Errorf("Service selector %v does not match the pod labels %v", svc.Spec.Selector, ds.Spec.Template.Labels)
	}
	if svc.Spec.InternalTrafficPolicy == nil || *svc.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal {
		t.Error("Service: internalTrafficPolicy must be Local, so that clients reach their node's agent")
	}
	for _, p := range svc.Spec.Ports {
		if got, ok := ports[p.TargetPort.StrVal]; !ok || got != p.Port {
			t.Errorf("Service port %s: %d → %s, which is container port %d", p.Name, p.Port, p.TargetPort.String(), got)
		}
	}
}

func selectorMatches(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// TestPoliciesConfigMap parses every policy file of the policies
// ConfigMap as the agent does.
func TestPoliciesConfigMap(t *testing.T) {
	m := load(t)
	cm := m.configMaps["fluxgate-policies"]
	if cm == nil || len(cm.Data) == 0 {
		t.Fatal("no ConfigMap fluxgate-policies with policy files")
	}
	for name, data := range cm.Data {
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			t.Errorf("key %s: the agent loads only *.yaml and *.yml files", name)
		}
		docs, err := policies.Parse(name, []byte(data))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(docs) == 0 {
			t.Errorf("%s holds no policy", name)
		}
	}
}

// TestKustomization lists every manifest exactly once.
func TestKustomization(t *testing.T) {
	m := load(t)
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
	}
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(k.Resources))
	if !slices.Equal(got, m.files) {
		t.Errorf("kustomization resources %v, want %v", got, m.files)
	}
}

// TestCRDsGenerated compares the CRD files with the generator's output
// (-update rewrites them), and checks them as the API server would.
func TestCRDsGenerated(t *testing.T) {
	for _, c := range crds {
		got, err := generateCRD(c)
		if err != nil {
			t.Fatal(err)
		}
		if *update {
			if err := os.WriteFile(c.file, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the schema generated from package policies; run go test ./deploy/kubernetes -run TestCRDsGenerated -update", c.file)
		}
	}
	m := load(t)
	for _, c := range crds {
		crd := m.crds[c.file]
		if crd == nil {
			t.Fatalf("%s: no CRD", c.file)
		}
		var internal apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(crd, &internal, nil); err != nil {
			t.Fatal(err)
		}
		// The API server records the storage version in the status.
		internal.Status.StoredVersions = []string{crd.Spec.Versions[0].Name}
		if errs := apiextensionsvalidation.ValidateCustomResourceDefinition(context.Background(), &internal); len(errs) > 0 {
			t.Errorf("%s: the API server would refuse it: %v", c.file, errs.ToAggregate())
		}
		if crd.Spec.Scope != apiextensionsv1.NamespaceScoped || crd.Spec.Group+"/"+crd.Spec.Versions[0].Name != policies.APIVersion {
			t.Errorf("%s: scope %s, group/version %s/%s", c.file, crd.Spec.Scope, crd.Spec.Group, crd.Spec.Versions[0].Name)
		}
	}
}

// TestCRDsAcceptPolicies validates real policy files (the examples, the
// parser's valid test data and the policies ConfigMap) against the CRD
// schemas, as the API server does on kubectl apply, and checks that the
// schemas refuse what the decoder refuses for its type: an unknown field,
// a wrong type, a bad duration.
func TestCRDsAcceptPolicies(t *testing.T) {
	m := load(t)
	type checker struct {
		validator  crdvalidation.SchemaValidator
		structural *structuralschema.Structural
	}
	checkers := map[string]checker{}
	for _, c := range crds {
		var schema apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(m.crds[c.file].Spec.Versions[0].Schema.OpenAPIV3Schema, &schema, nil); err != nil {
			t.Fatal(err)
		}
		v, _, err := crdvalidation.NewSchemaValidator(&schema)
		if err != nil {
			t.Fatal(err)
		}
		st, err := structuralschema.NewStructural(&schema)
		if err != nil {
			t.Fatal(err)
		}
		if errs := structuralschema.ValidateStructural(nil, st); len(errs) > 0 {
			t.Fatalf("%s: schema not structural: %v", c.file, errs.ToAggregate())
		}
		checkers[c.kind] = checker{v, st}
	}
	// validate does what the API server does on create with strict field
	// validation (kubectl apply --validate=strict, the default): unknown
	// fields are errors, then the schema is checked.
	validate := func(name string, doc map[string]any) error {
		c, ok := checkers[fmt.Sprint(doc["kind"])]
		if !ok {
			return fmt.Errorf("%s: kind %v has no CRD", name, doc["kind"])
		}
		opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
		if unknown := structuralpruning.PruneWithOptions(runtime.DeepCopyJSON(doc), c.structural, true, opts); len(unknown) > 0 {
			return fmt.Errorf("%s: unknown fields %v", name, unknown)
		}
		if r := c.validator.Validate(doc); !r.IsValid() {
			return fmt.Errorf("%s: %v", name, r.Errors)
		}
		return nil
	}
	sources := map[string][]byte{}
	files, _ := filepath.Glob("../../policies/examples/*.yaml")
	more, _ := filepath.Glob("../../policies/testdata/*.yaml")
	for _, f := range append(files, more...) {
		if strings.HasSuffix(f, ".bad.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources[f] = data
	}
	for k, v := range m.configMaps["fluxgate-policies"].Data {
		sources["fluxgate-policies/"+k] = []byte(v)
	}
	checked := 0
	for name, data := range sources {
		for i, doc := range splitDocuments(data) {
			var obj map[string]any
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				t.Fatalf("%s document %d: %v", name, i, err)
			}
			if obj == nil {
				continue
			}
			if err := validate(name, obj); err != nil {
				t.Error(err)
			}
			checked++
		}
	}
	if checked < 5 {
		t.Errorf("validated only %d policies", checked)
	}

	for _, bad := range []struct{ name, doc string }{
		{"unknown field", "kind: Policy\nspec: {circuit: {components: []}, resourcez: {}}"},
		{"wrong type", "kind: Policy\nspec: {circuit: {evaluation_interval: 1s, components: {}}}"},
		{"bad duration", "kind: Policy\nspec: {circuit: {evaluation_interval: 10 seconds, components: []}}"},
		{"unknown nested field", "kind: Policy\nspec: {resources: {flux_meters: {m: {selectors: [{control_point: a, agentgroup: x}]}}}, circuit: {components: []}}"},
		{"missing targetRef.name", "kind: TrafficPolicy\nspec: {targetRef: {kind: Deployment}}"},
		{"rate limit as a string", "kind: TrafficPolicy\nspec: {targetRef: {name: web}, rateLimit: {requestsPerSecond: fast}}"},
	} {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte("apiVersion: fluxgate.io/v1beta1\nmetadata: {name: x}\n"+bad.doc), &obj); err != nil {
			t.Fatal(err)
		}
		if err := validate(bad.name, obj); err == nil {
			t.Errorf("%s: the CRD schema accepted %s", bad.name, bad.doc)
		}
	}
}

// TestPrometheusScrapeConfig checks the scrape job: Prometheus loads it, its job name is one the built-in alerts select,
// and it keeps the agent's metrics port.
func TestPrometheusScrapeConfig(t *testing.T) {
	m := load(t)
	cm := m.configMaps["fluxgate-prometheus-scrape"]
	if cm == nil || cm.Data["fluxgate-scrape.yml"] == "" {
		t.Fatal("no ConfigMap fluxgate-prometheus-scrape with fluxgate-scrape.yml")
	}
	snippet := cm.Data["fluxgate-scrape.yml"]
	var sc struct {
		ScrapeConfigs []struct {
			JobName     string `json:"job_name"`
			MetricsPath string `json:"metrics_path"`
			Relabel     []struct {
				SourceLabels []string `json:"source_labels"`
				Regex        string   `json:"regex"`
				Action       string   `json:"action"`
			} `json:"relabel_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal([]byte(snippet), &sc); err != nil {
		t.Fatal(err)
	}
	if len(sc.ScrapeConfigs) != 1 {
		t.Fatalf("%d scrape configs, want 1", len(sc.ScrapeConfigs))
	}
	job := sc.ScrapeConfigs[0]
	if !strings.HasPrefix(job.JobName, "fluxgate") {
		t.Errorf("job_name %q: the built-in alerts select job=~\"fluxgate.*\"", job.JobName)
	}
	if job.MetricsPath != agent.DefaultConfig().Metrics.Path {
		t.Errorf("metrics_path %q, want %q", job.MetricsPath, agent.DefaultConfig().Metrics.Path)
	}
	keepsMetricsPort := false
	for _, r := range job.Relabel {
		if r.Action == "keep" && slices.Equal(r.SourceLabels, []string{"__meta_kubernetes_pod_container_port_name"}) && r.Regex == "metrics" {
			keepsMetricsPort = true
		}
	}
	if !keepsMetricsPort {
		t.Error("the job does not keep only the container port named metrics")
	}

	// Debian's promtool is built without Kubernetes service discovery,
	// so the config is loaded with Prometheus' own Go package instead.
	if _, err := promconfig.Load("global: {scrape_interval: 15s}\n"+snippet, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("Prometheus refuses the scrape config: %v", err)
	}
}
