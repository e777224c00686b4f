package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// apiError is the agent's JSON error body.
type apiError struct {
	Status  int      `json:"-"`
	Msg     string   `json:"error"`
	Message string   `json:"message"` // explains a coded Msg (admin_disabled, unauthorized)
	Errors  []string `json:"errors"`
	Hint    string   `json:"-"` // what the user can do about it
}

func (e *apiError) Error() string {
	msg := e.Msg
	if e.Message != "" {
		msg += ": " + e.Message
	}
	s := fmt.Sprintf("agent answered %d: %s", e.Status, msg)
	if len(e.Errors) > 0 {
		s += ":\n  " + strings.Join(e.Errors, "\n  ")
	}
	if e.Hint != "" {
		s += "\n" + e.Hint
	}
	return s
}

// authHint says what to do about a 401 or 403 from the agent's admin API.
func (c *cli) authHint(status int, code string) string {
	switch {
	case status == http.StatusForbidden && code == "admin_disabled":
		return "The agent's admin API is off. Set admin.token in the agent's fluxgate.yaml (or FLUXGATE_ADMIN_TOKEN), restart it, and pass the same token to fluxctl with --token or FLUXCTL_TOKEN."
	case status == http.StatusUnauthorized && c.token == "":
		return "The agent wants its admin token: pass it with --token or set FLUXCTL_TOKEN."
	case status == http.StatusUnauthorized:
		return "The agent refused the token: --token (or FLUXCTL_TOKEN) must be the agent's admin.token."
	}
	return ""
}

// do sends one request with a YAML body (if any) and decodes a JSON answer
// into out (if non-nil). It returns the HTTP status and the raw answer.
func (c *cli) do(ctx context.Context, method, path string, body []byte, accept string, out any) (int, []byte, error) {
	return c.send(ctx, method, path, "application/yaml", body, accept, out)
}

// doJSON is do with a JSON body and a JSON answer.
func (c *cli) doJSON(cmd *cobra.Command, method, path string, body []byte, out any) (int, []byte, error) {
	return c.send(cmd.Context(), method, path, "application/json", body, "application/json", out)
}

func (c *cli) send(ctx context.Context, method, path, contentType string, body []byte, accept string, out any) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if p, err := url.Parse(c.agentURL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		// "127.0.0.1:8080" and "localhost:8080" are the usual mistakes; url's
		// own errors for them ("first path segment in URL cannot contain
		// colon", "unsupported protocol scheme") do not say what to write.
		return 0, nil, fmt.Errorf("bad --agent URL %q: want http://HOST:PORT or https://HOST:PORT, such as http://127.0.0.1:8080", c.agentURL)
	}
	u, err := url.JoinPath(c.agentURL, path)
	if err != nil {
		return 0, nil, fmt.Errorf("bad --agent URL %q: %w", c.agentURL, err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := c.http
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("cannot reach the agent at %s: %w", c.agentURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode >= 400 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Msg == "" {
			ae.Msg = strings.TrimSpace(string(data))
		}
		ae.Hint = c.authHint(resp.StatusCode, ae.Msg)
		return resp.StatusCode, data, ae
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, data, fmt.Errorf("decode agent answer: %w", err)
		}
	}
	return resp.StatusCode, data, nil
}

// httpClient is the client for the agent: with --ca-file or --cert-file,
// one whose TLS trusts those CAs and presents that certificate (for an
// https:// agent); otherwise http.DefaultClient, which speaks https with
// the system roots too. A TLS flag with an http:// agent is refused
// rather than sent in clear.
func (c *cli) httpClient() (*http.Client, error) {
	if c.caFile == "" && c.certFile == "" && c.keyFile == "" {
		return http.DefaultClient, nil
	}
	if !strings.HasPrefix(strings.ToLower(c.agentURL), "https://") {
		return nil, fmt.Errorf("--ca-file, --cert-file and --key-file need an https:// --agent URL, got %q", c.agentURL)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caFile != "" {
		data, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", c.caFile)
		}
	}
	if (c.certFile == "") != (c.keyFile == "") {
		return nil, fmt.Errorf("--cert-file and --key-file go together")
	}
	if c.certFile != "" {
		pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file %s, --key-file %s: %w", c.certFile, c.keyFile, err)
		}
		// Always presented, whichever CAs the agent names.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}

func policyPath(namespace, name string) string {
	return "/v1/policies/" + url.PathEscape(namespace) + "/" + url.PathEscape(name)
}

// encode writes v as JSON or YAML when -o asks for it and reports whether
// it did; for -o table it writes nothing and the caller prints a table.
func (c *cli) encode(out io.Writer, v any) (bool, error) {
	switch c.output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return true, enc.Encode(v)
	case "yaml":
		return true, yaml.NewEncoder(out).Encode(v)
	case "table":
		return false, nil
	}
	return true, fmt.Errorf("unknown output format %q (want table, json or yaml)", c.output)
}
