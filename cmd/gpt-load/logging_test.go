package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// logAll logs one event at each level, with the level as the message.
func logAll(l zerolog.Logger) {
	l.Debug().Str("component", "test").Msg("debug-msg")
	l.Info().Str("component", "test").Msg("info-msg")
	l.Warn().Str("component", "test").Msg("warn-msg")
	l.Error().Str("component", "test").Msg("error-msg")
}

// jsonLevels parses JSON lines and returns their levels, checking each line.
func jsonLevels(t *testing.T, out []byte) []string {
	t.Helper()
	var levels []string
	for line := range strings.Lines(string(out)) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q is not JSON: %v", line, err)
		}
		level, _ := ev["level"].(string)
		if ev["message"] != level+"-msg" {
			t.Errorf("line %q: message does not match level", line)
		}
		if _, ok := ev["time"].(string); !ok {
			t.Errorf("line %q has no timestamp", line)
		}
		if ev["component"] != "test" {
			t.Errorf("line %q lost its fields", line)
		}
		levels = append(levels, level)
	}
	return levels
}

func TestNewLoggerJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level zerolog.Level
		want  []string
	}{
		{zerolog.DebugLevel, []string{"debug", "info", "warn", "error"}},
		{zerolog.InfoLevel, []string{"info", "warn", "error"}},
		{zerolog.WarnLevel, []string{"warn", "error"}},
		{zerolog.ErrorLevel, []string{"error"}},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			l, closer, err := NewLogger(LogConfig{Level: tt.level, Format: "json"}, &out)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			if l.GetLevel() != tt.level {
				t.Errorf("GetLevel() = %v", l.GetLevel())
			}
			logAll(l)
			if got := jsonLevels(t, out.Bytes()); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("levels %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNewLoggerText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		format  string
		level   zerolog.Level
		want    []string
		notWant []string
	}{
		{"info", "text", zerolog.InfoLevel, []string{"INF info-msg", "WRN warn-msg", "ERR error-msg", "component=test"}, []string{"debug-msg"}},
		{"debug", "text", zerolog.DebugLevel, []string{"DBG debug-msg", "INF info-msg"}, nil},
		{"error", "text", zerolog.ErrorLevel, []string{"ERR error-msg"}, []string{"info-msg", "warn-msg"}},
		{"empty format is text", "", zerolog.InfoLevel, []string{"INF info-msg"}, []string{"debug-msg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			l, closer, err := NewLogger(LogConfig{Level: tt.level, Format: tt.format}, &out)
			if err != nil {
				t.Fatal(err)
			}
			defer closer.Close()
			logAll(l)
			text := out.String()
			if strings.Contains(text, "\x1b[") {
				t.Errorf("colour codes written to a non-terminal:\n%q", text)
			}
			if strings.HasPrefix(text, "{") {
				t.Errorf("JSON written in text format:\n%s", text)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(text, w) {
					t.Errorf("output has %q:\n%s", w, text)
				}
			}
		})
	}
}

func TestNewLoggerFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format string
		check  func(t *testing.T, written []byte)
	}{
		{"json", func(t *testing.T, written []byte) {
			if got, want := jsonLevels(t, written), []string{"warn", "error", "warn", "error"}; !reflect.DeepEqual(got, want) {
				t.Errorf("levels %q, want %q", got, want)
			}
		}},
		{"text", func(t *testing.T, written []byte) {
			text := string(written)
			if strings.Contains(text, "\x1b[") || strings.Count(text, "WRN warn-msg") != 2 ||
				strings.Count(text, "ERR error-msg") != 2 || strings.Contains(text, "info-msg") {
				t.Errorf("file:\n%q", text)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "nested", "logs", "app.log")
			var out bytes.Buffer
			cfg := LogConfig{Level: zerolog.WarnLevel, Format: tt.format, EnableFile: true, FilePath: path}

			// A first logger creates the directory and the file; a second one
			// appends to it.
			for range 2 {
				l, closer, err := NewLogger(cfg, &out)
				if err != nil {
					t.Fatal(err)
				}
				logAll(l)
				if err := closer.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}

			written, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(written, out.Bytes()) {
				t.Errorf("file and stdout differ:\nfile:   %q\nstdout: %q", written, out.Bytes())
			}
			tt.check(t, written)
			info, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := info.Mode().Perm(); perm&^0o644 != 0 {
				t.Errorf("file mode %v, want at most 0644", perm)
			}
		})
	}
}

func TestNewLoggerErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDir := writeFile(t, filepath.Join(dir, "plain"), "x")
	tests := []struct {
		name string
		cfg  LogConfig
		want string
	}{
		{"unknown format", LogConfig{Level: zerolog.InfoLevel, Format: "xml"}, "LOG_FORMAT"},
		{"unsupported level", LogConfig{Level: zerolog.TraceLevel, Format: "json"}, "LOG_LEVEL"},
		{"file without path", LogConfig{Level: zerolog.InfoLevel, Format: "json", EnableFile: true}, "LOG_FILE_PATH"},
		{"directory under a file", LogConfig{Level: zerolog.InfoLevel, Format: "json", EnableFile: true, FilePath: filepath.Join(notDir, "app.log")}, "create log directory"},
		{"path is a directory", LogConfig{Level: zerolog.InfoLevel, Format: "json", EnableFile: true, FilePath: dir}, "open log file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, closer, err := NewLogger(tt.cfg, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want an error about %s, got %v", tt.want, err)
			}
			if closer == nil || closer.Close() != nil {
				t.Error("the closer returned with an error must be usable")
			}
		})
	}
}

func TestNewLoggerWithoutFileClosesNothing(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l, closer, err := NewLogger(LogConfig{Level: zerolog.InfoLevel, Format: "json"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if err := closer.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	l.Info().Msg("info-msg")
	if !strings.Contains(out.String(), "info-msg") {
		t.Errorf("logging after Close failed: %q", out.String())
	}
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	file, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })
	tests := []struct {
		name string
		w    interface{ Write([]byte) (int, error) }
		want bool
	}{
		{"buffer", &bytes.Buffer{}, false},
		{"regular file", file, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := isTerminal(tt.w); got != tt.want {
				t.Errorf("isTerminal = %v, want %v", got, tt.want)
			}
		})
	}
}
