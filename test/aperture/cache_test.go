package aperture

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

type cacheSeen struct {
	Result, ResultValue, Global, GlobalValue string
	Error                                    *string
}

// TestApertureJSSDKCaches: the JavaScript SDK's result and global caches
// work against the agent, unmodified: a first flow misses both, stores
// both, a second flow finds them, deleting the result entry makes the
// third flow miss it while the global entry stays; and a flow started in
// ramp mode, which no ramp selects, is rejected with no_matching_ramp.
func TestApertureJSSDKCaches(t *testing.T) {
	bin, dir := node(t)
	addr, _ := startAgent(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "cache.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AGENT="+addr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node cache.mjs: %v\n%s", err, stderr.String())
	}
	t.Logf("cache.mjs: %s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res struct {
		First, Second, Third               cacheSeen
		SetResult, SetGlobal, DeleteResult *string
		Ramp                               struct {
			ShouldRun    bool `json:"shouldRun"`
			RejectReason any  `json:"rejectReason"`
		}
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("node cache.mjs printed %q: %v\n%s", out, err, stderr.String())
	}
	if res.First.Result != "MISS" || res.First.Global != "MISS" || res.First.Error != nil {
		t.Errorf("first flow: %+v, want both caches missed", res.First)
	}
	if res.SetResult != nil || res.SetGlobal != nil || res.DeleteResult != nil {
		t.Errorf("cache calls failed: set result %v, set global %v, delete result %v", deref(res.SetResult), deref(res.SetGlobal), deref(res.DeleteResult))
	}
	if res.Second.Result != "HIT" || res.Second.ResultValue != "42" || res.Second.Global != "HIT" || res.Second.GlobalValue != "hello" {
		t.Errorf("second flow: %+v, want both entries found", res.Second)
	}
	if res.Third.Result != "MISS" || res.Third.Global != "HIT" || res.Third.GlobalValue != "hello" {
		t.Errorf("third flow: %+v, want the result entry deleted and the global one kept", res.Third)
	}
	// The SDK's protobuf loader gives enums as names or numbers.
	if res.Ramp.ShouldRun || (res.Ramp.RejectReason != "REJECT_REASON_NO_MATCHING_RAMP" && res.Ramp.RejectReason != float64(4)) {
		t.Errorf("ramp-mode flow: %+v, want rejected with no_matching_ramp", res.Ramp)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
