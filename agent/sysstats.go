package agent

import (
	"net/http"
	"runtime"
	"time"
)

// SystemStats is the JSON body of /v1/monitoring/metrics: a quick look at
// the process for people without a Prometheus server at hand.
type SystemStats struct {
	UptimeSeconds    float64 `json:"uptime_seconds"`
	GoVersion        string  `json:"go_version"`
	Version          string  `json:"version"`
	NumGoroutines    int     `json:"num_goroutines"`
	MemoryAllocMB    float64 `json:"memory_alloc_mb"`
	MemorySysMB      float64 `json:"memory_sys_mb"`
	NumGC            uint32  `json:"num_gc"`
	GCPauseMS        float64 `json:"gc_pause_ms"`       // the most recent pause
	GCPauseTotalMS   float64 `json:"gc_pause_total_ms"` // since start
	PoliciesLoaded   int     `json:"policies_loaded"`
	PolicyLoadErrors int     `json:"policy_load_errors"`
}

func (a *Agent) systemStats(now time.Time) SystemStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	const mb = 1 << 20
	s := SystemStats{
		UptimeSeconds:  now.Sub(a.started).Seconds(),
		GoVersion:      runtime.Version(),
		Version:        Version,
		NumGoroutines:  runtime.NumGoroutine(),
		MemoryAllocMB:  float64(ms.Alloc) / mb,
		MemorySysMB:    float64(ms.Sys) / mb,
		NumGC:          ms.NumGC,
		GCPauseTotalMS: float64(ms.PauseTotalNs) / 1e6,
	}
	if ms.NumGC > 0 {
		s.GCPauseMS = float64(ms.PauseNs[(ms.NumGC+255)%256]) / 1e6
	}
	snap := a.store.Snapshot()
	s.PoliciesLoaded = len(snap.Entries)
	s.PolicyLoadErrors = len(snap.Errors)
	return s
}

func (a *Agent) serveSystemStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.systemStats(time.Now()))
}
