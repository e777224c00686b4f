package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fluxgate/fluxgate/policies"
)

// Applying to a cluster: fluxctl writes the policies as custom resources
// (fluxgate.io/v1beta1 Policy and TrafficPolicy) with a server-side apply
// (field manager "fluxctl"), over plain REST with the kubeconfig's
// credentials: client-go's rest and clientcmd only, no typed clientset.

// fieldManager owns the fields fluxctl applies.
const fieldManager = "fluxctl"

// resources maps a policy kind to its custom resource's plural.
var resources = map[string]string{
	policies.KindPolicy:        "policies",
	policies.KindTrafficPolicy: "trafficpolicies",
}

// useCluster reports whether apply writes to a cluster: --kubeconfig is
// set, or KUBECONFIG is and neither --agent nor FLUXCTL_AGENT names an
// agent. It returns the kubeconfig path ("" for KUBECONFIG's own list).
func (c *cli) useCluster(agentSet bool) (bool, string) {
	if c.kubeconfig != "" {
		return true, c.kubeconfig
	}
	if os.Getenv("KUBECONFIG") != "" && !agentSet && os.Getenv("FLUXCTL_AGENT") == "" {
		return true, ""
	}
	return false, ""
}

// clusterClient is an API server reached with a kubeconfig.
type clusterClient struct {
	host      string
	http      *http.Client
	namespace string // the context's namespace, "default" if none
}

func newClusterClient(kubeconfig, kubeContext string) (*clusterClient, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules() // KUBECONFIG, else ~/.kube/config
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	rc.UserAgent = "fluxctl"
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	host := strings.TrimSuffix(rc.Host, "/")
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	return &clusterClient{host: host + rc.APIPath, http: hc, namespace: ns}, nil
}

// apply server-side applies one policy document into namespace ns and
// reports whether it created the object. Without force, a field another
// field manager owns with another value is a conflict (the API server's
// 409, naming the manager), as with kubectl.
func (k *clusterClient) apply(ctx context.Context, kind, ns, name string, doc []byte, force bool) (created bool, err error) {
	plural, ok := resources[kind]
	if !ok {
		return false, fmt.Errorf("kind %s has no custom resource", kind)
	}
	group, version, _ := strings.Cut(policies.APIVersion, "/")
	u := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/%s/%s?fieldManager=%s&force=%t",
		k.host, group, version, url.PathEscape(ns), plural, url.PathEscape(name), fieldManager, force)
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, u, strings.NewReader(string(doc)))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/apply-patch+yaml")
	req.Header.Set("Accept", "application/json")
	resp, err := k.http.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch resp.StatusCode {
	case http.StatusOK:
		return false, nil
	case http.StatusCreated:
		return true, nil
	}
	var st struct {
		Message string `json:"message"`
		Reason  string `json:"reason"`
		Details struct {
			Kind string `json:"kind"`
		} `json:"details"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		switch st.Reason {
		case "NotFound":
			if st.Details.Kind == "namespaces" { // the namespace, not the resource, is missing
				return false, fmt.Errorf("%s (kubectl create namespace %s, or --namespace)", st.Message, ns)
			}
			return false, fmt.Errorf("%s (are the CRDs of deploy/kubernetes installed?)", st.Message)
		case "Conflict":
			return false, fmt.Errorf("%s (--force-conflicts takes the fields over)", st.Message)
		}
		return false, fmt.Errorf("%s", st.Message)
	}
	return false, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
}
