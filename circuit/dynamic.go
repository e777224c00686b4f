package circuit

import (
	"maps"
	"sync"

	"github.com/fluxgate/fluxgate/policies"
)

// DynamicConfig holds values that change at run time without a policy
// reload, per policy: variables read them by config_key every tick. It is
// safe for concurrent use.
type DynamicConfig struct {
	mu     sync.RWMutex
	values map[policies.Key]map[string]any // guarded by mu
}

// NewDynamicConfig returns an empty DynamicConfig.
func NewDynamicConfig() *DynamicConfig {
	return &DynamicConfig{values: map[policies.Key]map[string]any{}}
}

// Set replaces the dynamic values of a policy; nil or empty removes them.
func (d *DynamicConfig) Set(key policies.Key, values map[string]any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(values) == 0 {
		delete(d.values, key)
		return
	}
	d.values[key] = maps.Clone(values)
}

// Get returns one value of a policy.
func (d *DynamicConfig) Get(key policies.Key, name string) (any, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	v, ok := d.values[key][name]
	return v, ok
}

// All returns a copy of a policy's values.
func (d *DynamicConfig) All(key policies.Key) map[string]any {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return maps.Clone(d.values[key])
}
