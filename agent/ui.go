package agent

import (
	"github.com/fluxgate/fluxgate/policies"
	"github.com/fluxgate/fluxgate/ui"
)

// registerUI mounts the live view (package ui): the page under /ui/,
// which holds no data and is served without a token while the admin
// endpoints are on (403 while they are off), and the JSON it reads,
// behind the admin token like the signals API. Start runs its history.
func (a *Agent) registerUI() {
	a.ui = ui.New(ui.Options{
		Circuits: a.circuits,
		Policy:   a.loadedPolicy,
		Gatherer: a.registry,
		Enabled:  a.cfg.Admin.Token != "",
	})
	a.mux.Handle("GET /ui/", a.ui.Pages())
	a.ui.Register(a.HandleHTTP)
}

// loadedPolicy is the loaded Policy with key k, or nil.
func (a *Agent) loadedPolicy(k policies.Key) *policies.Policy {
	if e := a.store.Snapshot().Entries[k]; e != nil {
		if p, ok := e.Object.(*policies.Policy); ok {
			return p
		}
	}
	return nil
}
