package agent

import (
	"reflect"
)

// Keys a running agent applies from a changed config file; any other
// changed key of Config is logged as needing a restart. Sections of the
// file that are not the agent's (the gateway's) are not in Config.
const (
	keyLogLevel    = "log.level"
	keyPoliciesDir = "policies.dir"
)

// ApplyConfig applies cfg, the agent's part of a config file that
// changed, as far as a running agent can: log.level (when
// Options.LogLevel is set) and policies.dir. Every other key that changed
// since the last call (or since New, with Options.Config) is logged as
// needing a restart, once. It returns the keys it applied and those that
// need a restart. The program's watcher of the file (package fluxgate)
// calls it; reading the file, and keeping the running configuration when
// the file does not load, is the watcher's.
func (a *Agent) ApplyConfig(cfg Config) (applied, restart []string) {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	prev := reflect.ValueOf(&a.fileCfg).Elem()
	cur := reflect.ValueOf(&cfg).Elem()
	for _, f := range schema.Fields() {
		if reflect.DeepEqual(prev.FieldByIndex(f.Index).Interface(), cur.FieldByIndex(f.Index).Interface()) {
			continue
		}
		switch {
		case f.Key == keyLogLevel && a.level != nil:
			a.level.Set(parseLevel(cfg.Log.Level))
			applied = append(applied, f.Key)
		case f.Key == keyPoliciesDir:
			if err := a.store.SetDir(cfg.Policies.Dir); err != nil {
				a.logger.Error("policies.dir change refused; the old directory stays", "err", err)
				cfg.Policies.Dir = a.fileCfg.Policies.Dir // retried at the next change
				continue
			}
			applied = append(applied, f.Key)
		default:
			restart = append(restart, f.Key)
		}
	}
	a.fileCfg = cfg
	if len(applied) > 0 {
		a.logger.Info("config file reloaded", "applied", applied)
	}
	if len(restart) > 0 {
		a.logger.Warn("config file changed keys that apply only at restart; restart the agent (kubectl rollout restart daemonset/fluxgate-agent)", "keys", restart)
	}
	return applied, restart
}
