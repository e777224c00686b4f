package agent

import "github.com/fluxgate/fluxgate/config"

// ConfigKey describes one key of fluxgate.yaml.
type ConfigKey = config.Key

// ConfigKeys lists every key of Config in struct order.
func ConfigKeys() []ConfigKey { return schema.Keys() }

// GetConfigValue returns the value of key in cfg as it would be written in
// YAML, without quotes for strings; lists and maps are in YAML flow style.
func GetConfigValue(cfg Config, key string) (string, error) { return schema.Get(cfg, key) }

// SetConfigValue returns data, a fluxgate.yaml document, with key set to
// value. value is parsed with the key's type and must pass the key's
// validation; unknown keys, keys holding lists or maps and wrong types are
// refused. Comments, key order and the rest of the text are kept: the value
// is replaced in place, and a missing key is added at the end of its
// section (a missing section at the end of the file). An empty data
// creates the document. The edited document must load (LoadConfig,
// environment aside).
func SetConfigValue(data []byte, key, value string) ([]byte, error) {
	return schema.Set(data, key, value)
}

// ConfigReference renders ConfigKeys as the markdown table of docs/configuration.md's
// configuration reference.
func ConfigReference() string { return schema.Reference() }
