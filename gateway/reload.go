package gateway

import (
	"reflect"
)

// ApplyConfig applies cfg, the gateway section of a config file that
// changed, to the running gateway, and reports whether anything changed.
// gateway.listen, gateway.tls, gateway.h2c and gateway.max_connections
// keep their running values (they apply at the next restart; a warning
// says so). When the gateway
// refuses cfg the running routing stays and the error is returned; until
// a later change applies, health reports it. Requests in flight finish
// on the state they started with. The program's watcher of the file
// (package fluxgate) calls it.
func (s *Service) ApplyConfig(cfg Config) (bool, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	if reflect.DeepEqual(cfg, s.base) {
		return false, nil
	}
	if cfg.Listen != s.base.Listen {
		s.logger.Warn("gateway.listen changed; it applies at the next restart", "listening", s.base.Listen, "configured", cfg.Listen)
		cfg.Listen = s.base.Listen
	}
	if !reflect.DeepEqual(cfg.TLS, s.base.TLS) || cfg.H2C != s.base.H2C {
		s.logger.Warn("gateway.tls or gateway.h2c changed; it applies at the next restart (the certificate files themselves reload live)")
		cfg.TLS, cfg.H2C = s.base.TLS, s.base.H2C
	}
	if cfg.MaxConnections != s.base.MaxConnections {
		s.logger.Warn("gateway.max_connections changed; it applies at the next restart", "running", s.base.MaxConnections, "configured", cfg.MaxConnections)
		cfg.MaxConnections = s.base.MaxConnections
	}
	old := s.base
	s.base = cfg
	if err := s.reconcileLocked("config file changed"); err != nil {
		s.base = old
		s.refuseLocked(err)
		return false, err
	}
	s.fileErr = ""
	s.reloads.WithLabelValues("success").Inc()
	return true, nil
}

// RefuseConfig records that a change of the config file did not load
// (err names each problem with its file:line:col): the running routing
// stays, fluxgate_gateway_config_reloads_total{result="failure"} counts
// it and health reports it until a later change applies.
func (s *Service) RefuseConfig(err error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	s.refuseLocked(err)
}

func (s *Service) refuseLocked(err error) {
	s.reloads.WithLabelValues("failure").Inc()
	s.fileErr = err.Error()
}
