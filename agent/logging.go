package agent

import (
	"io"
	"log/slog"
	"strings"
)

// NewLogger returns the structured logger the configuration asks for:
// JSON (the default) or text lines on w, at log.level.
func NewLogger(c LogConfig, w io.Writer) *slog.Logger {
	l, _ := NewLoggerLevel(c, w)
	return l
}

// NewLoggerLevel is NewLogger that also returns the logger's level, which
// the caller may change while it runs: give it to Options.LogLevel and
// the agent applies a new log.level from a reloaded config file.
func NewLoggerLevel(c LogConfig, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if strings.ToLower(c.Format) == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), level
	}
	return slog.New(slog.NewJSONHandler(w, opts)), level
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
