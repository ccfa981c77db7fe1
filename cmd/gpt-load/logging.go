package main

import (
	"fmt"
	"io"
	stdlog "log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// NewLogger builds the node's root logger: timestamped events at cfg.Level and
// above, written to stdout as text (zerolog.ConsoleWriter, coloured only on a
// terminal) or JSON lines, and also to cfg.FilePath when cfg.EnableFile is set,
// in the same format without colour. An empty cfg.Format means text. The
// returned Closer closes the log file; it is a no-op without one.
func NewLogger(cfg LogConfig, stdout io.Writer) (zerolog.Logger, io.Closer, error) {
	if cfg.Format == "" {
		cfg.Format = defaultLogFormat
	}
	if err := cfg.Validate(); err != nil {
		return zerolog.Nop(), nopCloser{}, fmt.Errorf("logger: %w", err)
	}

	out := formatWriter(cfg.Format, stdout, !isTerminal(stdout))
	var closer io.Closer = nopCloser{}
	if cfg.EnableFile {
		f, err := openLogFile(cfg.FilePath)
		if err != nil {
			return zerolog.Nop(), nopCloser{}, err
		}
		out = zerolog.MultiLevelWriter(out, formatWriter(cfg.Format, f, true))
		closer = f
	}

	// SyncWriter: the logger is shared by every goroutine, and stdout may be
	// any writer.
	logger := zerolog.New(zerolog.SyncWriter(out)).Level(cfg.Level).With().Timestamp().Logger()
	return logger, closer, nil
}

// formatWriter wraps w so that it receives events in the given format.
func formatWriter(format string, w io.Writer, noColor bool) io.Writer {
	if format == "json" {
		return w
	}
	return zerolog.ConsoleWriter{Out: w, NoColor: noColor, TimeFormat: time.RFC3339}
}

// openLogFile opens path for appending, creating it and its directory.
func openLogFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// isTerminal reports whether w is a file attached to a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// serverErrorLog is the http.Server ErrorLog: net/http's own messages (TLS handshakes,
// accept errors, a panic that escaped the router) go to the service log at warn level,
// in its format, rather than to stderr. They quote addresses, never a request's URL or
// headers; the router recovers its panics itself without their value (httpapi).
func serverErrorLog(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(levelWriter{log.Warn}, "", 0)
}

// levelWriter logs each write as one message of the level its event function makes.
type levelWriter struct{ event func() *zerolog.Event }

func (w levelWriter) Write(p []byte) (int, error) {
	w.event().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
