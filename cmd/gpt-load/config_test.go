package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// lookupMap stands in for os.LookupEnv.
func lookupMap(m map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// withNode adds a fixed NODE_NAME unless m sets one, so that the tests do not
// depend on the host name of the machine running them.
func withNode(m map[string]string) map[string]string {
	out := map[string]string{"NODE_NAME": "node-1"}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func load(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	return LoadConfig(lookupMap(withNode(env)), "")
}

func mustLoad(t *testing.T, env map[string]string) Config {
	t.Helper()
	c, err := load(t, env)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	return c
}

func errorLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil || validNodeName(host) != nil {
		t.Skipf("host name %q cannot be a node name", host)
	}
	c, err := LoadConfig(lookupMap(nil), filepath.Join(t.TempDir(), ".env"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	tests := []struct {
		variable  string
		got, want any
	}{
		{"HOST", c.Host, "0.0.0.0"},
		{"PORT", c.Port, 3001},
		{"SERVER_READ_TIMEOUT", c.ReadTimeout, 60 * time.Second},
		{"SERVER_WRITE_TIMEOUT", c.WriteTimeout, 600 * time.Second},
		{"SERVER_IDLE_TIMEOUT", c.IdleTimeout, 120 * time.Second},
		{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", c.ShutdownTimeout, 10 * time.Second},
		{"IS_SLAVE", c.IsSlave, false},
		{"TZ", c.TZ, ""},
		{"TZ/Location", c.Location, time.Local},
		{"AUTH_KEY", c.AuthKey, ""},
		{"AUTH_KEY/from data dir", c.AuthKeyFromDataDir, true},
		{"ENCRYPTION_KEY", c.EncryptionKey, ""},
		{"DATABASE_DSN", c.DatabaseDSN, filepath.Join("data", "gpt-load.db")},
		{"REDIS_DSN", c.RedisDSN, ""},
		{"MAX_CONCURRENT_REQUESTS", c.MaxConcurrentRequests, 100},
		{"ENABLE_CORS", c.CORS.Enabled, false},
		{"ALLOWED_ORIGINS", c.CORS.AllowedOrigins, []string(nil)},
		{"ALLOWED_METHODS", c.CORS.AllowedMethods, []string{"GET", "POST", "PUT", "DELETE", "OPTIONS"}},
		{"ALLOWED_HEADERS", c.CORS.AllowedHeaders, []string{"*"}},
		{"ALLOW_CREDENTIALS", c.CORS.AllowCredentials, false},
		{"LOG_LEVEL", c.Log.Level, zerolog.InfoLevel},
		{"LOG_FORMAT", c.Log.Format, "text"},
		{"LOG_ENABLE_FILE", c.Log.EnableFile, false},
		{"LOG_FILE_PATH", c.Log.FilePath, filepath.Join("data", "logs", "app.log")},
		{"DATA_DIR", c.DataDir, "./data"},
		{"NATS_URL", c.NATS.URLs, []string(nil)},
		{"NATS_LISTEN", c.NATS.Listen, ""},
		{"NATS_CREDS", c.NATS.Creds, ""},
		{"NATS_USER", c.NATS.User, ""},
		{"NATS_PASSWORD", c.NATS.Password, ""},
		{"NATS_TOKEN", c.NATS.Token, ""},
		{"NATS_TLS_CA", c.NATS.TLSCA, ""},
		{"NATS_TLS_CERT", c.NATS.TLSCert, ""},
		{"NATS_TLS_KEY", c.NATS.TLSKey, ""},
		{"NATS_REPLICAS", c.NATS.Replicas, 1},
		{"NODE_NAME", c.NodeName, host},
		{"METRICS_PUBLIC", c.MetricsPublic, false},
		{"REQLOG_MAX_AGE", c.ReqLog.MaxAge, 72 * time.Hour},
		{"LEADER_LEASE", c.LeaderLease, 10 * time.Second},
		{"NATS_SYNC", c.NATS.Sync, time.Second},
		{"REQLOG_MAX_BYTES", c.ReqLog.MaxBytes, int64(1 << 30)},
		{"ListenAddr", c.ListenAddr(), "0.0.0.0:3001"},
		{"UsesEmbeddedNATS", c.UsesEmbeddedNATS(), true},
	}
	for _, tt := range tests {
		t.Run(tt.variable, func(t *testing.T) {
			t.Parallel()
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func TestLoadConfigValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	creds := writeFile(t, filepath.Join(dir, "user.creds"), "creds")
	ca := writeFile(t, filepath.Join(dir, "ca.pem"), "ca")
	cert := writeFile(t, filepath.Join(dir, "cert.pem"), "cert")
	key := writeFile(t, filepath.Join(dir, "key.pem"), "key")

	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"nats sync interval", map[string]string{"NATS_SYNC": "250ms"}, func(t *testing.T, c Config) {
			if c.NATS.Sync != 250*time.Millisecond || c.NATS.SyncAlways {
				t.Errorf("got %s %v", c.NATS.Sync, c.NATS.SyncAlways)
			}
		}},
		{"nats sync always", map[string]string{"NATS_SYNC": "Always"}, func(t *testing.T, c Config) {
			if !c.NATS.SyncAlways {
				t.Error("not always")
			}
		}},
		{"host and port", map[string]string{"HOST": " 127.0.0.1 ", "PORT": "8080"}, func(t *testing.T, c Config) {
			if c.Host != "127.0.0.1" || c.Port != 8080 || c.ListenAddr() != "127.0.0.1:8080" {
				t.Errorf("got %q %d %q", c.Host, c.Port, c.ListenAddr())
			}
		}},
		{"timeouts", map[string]string{
			"SERVER_READ_TIMEOUT": "1", "SERVER_WRITE_TIMEOUT": "2", "SERVER_IDLE_TIMEOUT": "3",
			"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "30",
		}, func(t *testing.T, c Config) {
			if c.ReadTimeout != time.Second || c.WriteTimeout != 2*time.Second ||
				c.IdleTimeout != 3*time.Second || c.ShutdownTimeout != 30*time.Second {
				t.Errorf("got %v %v %v %v", c.ReadTimeout, c.WriteTimeout, c.IdleTimeout, c.ShutdownTimeout)
			}
		}},
		{"short shutdown timeout is raised to 10 s", map[string]string{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "3"}, func(t *testing.T, c Config) {
			if c.ShutdownTimeout != 10*time.Second {
				t.Errorf("ShutdownTimeout = %v", c.ShutdownTimeout)
			}
		}},
		{"booleans in every spelling", map[string]string{
			"IS_SLAVE": "TRUE", "ENABLE_CORS": "yes", "ALLOWED_ORIGINS": "https://a.example",
			"ALLOW_CREDENTIALS": "On", "LOG_ENABLE_FILE": "1", "METRICS_PUBLIC": "true",
		}, func(t *testing.T, c Config) {
			if !c.IsSlave || !c.CORS.Enabled || !c.CORS.AllowCredentials || !c.Log.EnableFile || !c.MetricsPublic {
				t.Errorf("got %+v", c)
			}
		}},
		{"false booleans", map[string]string{"IS_SLAVE": "off", "METRICS_PUBLIC": "No", "ENABLE_CORS": "0", "LOG_ENABLE_FILE": "FALSE"}, func(t *testing.T, c Config) {
			if c.IsSlave || c.MetricsPublic || c.CORS.Enabled || c.Log.EnableFile {
				t.Errorf("got %+v", c)
			}
		}},
		{"time zone", map[string]string{"TZ": "Asia/Shanghai"}, func(t *testing.T, c Config) {
			if c.TZ != "Asia/Shanghai" || c.Location == nil || c.Location.String() != "Asia/Shanghai" {
				t.Errorf("TZ %q, Location %v", c.TZ, c.Location)
			}
		}},
		{"time zone with POSIX colon", map[string]string{"TZ": ":UTC"}, func(t *testing.T, c Config) {
			if c.Location == nil || c.Location.String() != "UTC" {
				t.Errorf("Location %v", c.Location)
			}
		}},
		{"auth key given", map[string]string{"AUTH_KEY": "a-long-and-strong-admin-kee"}, func(t *testing.T, c Config) {
			if c.AuthKey != "a-long-and-strong-admin-kee" || c.AuthKeyFromDataDir {
				t.Errorf("AuthKeyFromDataDir = %v", c.AuthKeyFromDataDir)
			}
		}},
		{"data dir moves the derived paths", map[string]string{"DATA_DIR": "/srv/gpt"}, func(t *testing.T, c Config) {
			if c.DataDir != "/srv/gpt" || c.DatabaseDSN != filepath.Join("/srv/gpt", "gpt-load.db") ||
				c.Log.FilePath != filepath.Join("/srv/gpt", "logs", "app.log") {
				t.Errorf("got %q %q %q", c.DataDir, c.DatabaseDSN, c.Log.FilePath)
			}
		}},
		{"explicit paths win over the data dir", map[string]string{
			"DATA_DIR": "/srv/gpt", "DATABASE_DSN": "postgres://u:p@db/gpt", "LOG_FILE_PATH": "/var/log/gpt.log",
		}, func(t *testing.T, c Config) {
			if c.DatabaseDSN != "postgres://u:p@db/gpt" || c.Log.FilePath != "/var/log/gpt.log" {
				t.Errorf("got %q %q", c.DatabaseDSN, c.Log.FilePath)
			}
		}},
		{"lists are trimmed and empties dropped", map[string]string{
			"ENABLE_CORS": "true", "ALLOWED_ORIGINS": " https://a.example , ,https://b.example,",
			"ALLOWED_METHODS": "GET, POST", "ALLOWED_HEADERS": "Authorization ,Content-Type",
		}, func(t *testing.T, c Config) {
			want := CORSConfig{
				Enabled:        true,
				AllowedOrigins: []string{"https://a.example", "https://b.example"},
				AllowedMethods: []string{"GET", "POST"},
				AllowedHeaders: []string{"Authorization", "Content-Type"},
			}
			if !reflect.DeepEqual(c.CORS, want) {
				t.Errorf("got %+v, want %+v", c.CORS, want)
			}
		}},
		{"a list of only commas is unset", map[string]string{"ALLOWED_METHODS": " , ,"}, func(t *testing.T, c Config) {
			if len(c.CORS.AllowedMethods) != 5 {
				t.Errorf("AllowedMethods = %q", c.CORS.AllowedMethods)
			}
		}},
		{"log settings", map[string]string{"LOG_LEVEL": "WARN", "LOG_FORMAT": "JSON"}, func(t *testing.T, c Config) {
			if c.Log.Level != zerolog.WarnLevel || c.Log.Format != "json" {
				t.Errorf("got %+v", c.Log)
			}
		}},
		{"every log level", map[string]string{"LOG_LEVEL": "debug"}, func(t *testing.T, c Config) {
			if c.Log.Level != zerolog.DebugLevel {
				t.Errorf("Level = %v", c.Log.Level)
			}
		}},
		{"error log level", map[string]string{"LOG_LEVEL": "error"}, func(t *testing.T, c Config) {
			if c.Log.Level != zerolog.ErrorLevel {
				t.Errorf("Level = %v", c.Log.Level)
			}
		}},
		{"concurrency", map[string]string{"MAX_CONCURRENT_REQUESTS": "1"}, func(t *testing.T, c Config) {
			if c.MaxConcurrentRequests != 1 {
				t.Errorf("MaxConcurrentRequests = %d", c.MaxConcurrentRequests)
			}
		}},
		{"external NATS", map[string]string{
			"NATS_URL":      "nats://n1:4222, tls://user:pw@n2:4222,ws://n3,wss://n4:443/path",
			"NATS_CREDS":    creds,
			"NATS_USER":     "svc",
			"NATS_PASSWORD": "pw",
			"NATS_TOKEN":    "tok",
			"NATS_TLS_CA":   ca,
			"NATS_TLS_CERT": cert,
			"NATS_TLS_KEY":  key,
			"NATS_REPLICAS": "3",
		}, func(t *testing.T, c Config) {
			want := NATSConfig{
				URLs:  []string{"nats://n1:4222", "tls://user:pw@n2:4222", "ws://n3", "wss://n4:443/path"},
				Creds: creds, User: "svc", Password: "pw", Token: "tok",
				TLSCA: ca, TLSCert: cert, TLSKey: key, Replicas: 3, Sync: time.Second,
			}
			if !reflect.DeepEqual(c.NATS, want) {
				t.Errorf("got %+v, want %+v", c.NATS, want)
			}
			if c.UsesEmbeddedNATS() {
				t.Error("UsesEmbeddedNATS with NATS_URL set")
			}
		}},
		{"request-log limits", map[string]string{"REQLOG_MAX_AGE": "168h", "REQLOG_MAX_BYTES": "20GiB"}, func(t *testing.T, c Config) {
			if c.ReqLog.MaxAge != 168*time.Hour || c.ReqLog.MaxBytes != 20<<30 {
				t.Errorf("got %+v", c.ReqLog)
			}
		}},
		{"request-log limits in plain bytes and decimal units", map[string]string{"REQLOG_MAX_AGE": "90m", "REQLOG_MAX_BYTES": "5000000"}, func(t *testing.T, c Config) {
			if c.ReqLog.MaxAge != 90*time.Minute || c.ReqLog.MaxBytes != 5_000_000 {
				t.Errorf("got %+v", c.ReqLog)
			}
		}},
		{"request-log size in MB", map[string]string{"REQLOG_MAX_BYTES": "512 MB"}, func(t *testing.T, c Config) {
			if c.ReqLog.MaxBytes != 512e6 {
				t.Errorf("MaxBytes = %d", c.ReqLog.MaxBytes)
			}
		}},
		{"embedded NATS listener", map[string]string{"NATS_LISTEN": "127.0.0.1:4222"}, func(t *testing.T, c Config) {
			if c.NATS.Listen != "127.0.0.1:4222" || !c.UsesEmbeddedNATS() {
				t.Errorf("got %+v", c.NATS)
			}
		}},
		{"embedded NATS listener on any port", map[string]string{"NATS_LISTEN": ":0"}, func(t *testing.T, c Config) {
			if c.NATS.Listen != ":0" {
				t.Errorf("Listen = %q", c.NATS.Listen)
			}
		}},
		{"node name", map[string]string{"NODE_NAME": "node_2.eu-west"}, func(t *testing.T, c Config) {
			if c.NodeName != "node_2.eu-west" {
				t.Errorf("NodeName = %q", c.NodeName)
			}
		}},
		{"secrets are kept verbatim", map[string]string{"ENCRYPTION_KEY": " spaced encryption key value "}, func(t *testing.T, c Config) {
			if c.EncryptionKey != " spaced encryption key value " {
				t.Errorf("EncryptionKey changed")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.check(t, mustLoad(t, tt.env))
		})
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := writeFile(t, filepath.Join(dir, "file.pem"), "pem")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name     string
		env      map[string]string
		variable string
		want     string // part of the line naming the variable
	}{
		{"port not a number", map[string]string{"PORT": "abc"}, "PORT", `"abc" is not an integer`},
		{"port zero", map[string]string{"PORT": "0"}, "PORT", "must be between 1 and 65535, got 0"},
		{"port too high", map[string]string{"PORT": "65536"}, "PORT", "got 65536"},
		{"port overflows", map[string]string{"PORT": "99999999999999999999"}, "PORT", "out of range"},
		{"negative read timeout", map[string]string{"SERVER_READ_TIMEOUT": "-5"}, "SERVER_READ_TIMEOUT", "must be a positive number of seconds, got -5"},
		{"zero write timeout", map[string]string{"SERVER_WRITE_TIMEOUT": "0"}, "SERVER_WRITE_TIMEOUT", "got 0"},
		{"fractional idle timeout", map[string]string{"SERVER_IDLE_TIMEOUT": "1.5"}, "SERVER_IDLE_TIMEOUT", `got "1.5"`},
		{"huge idle timeout", map[string]string{"SERVER_IDLE_TIMEOUT": "99999999999"}, "SERVER_IDLE_TIMEOUT", "out of range"},
		{"zero shutdown timeout", map[string]string{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "0"}, "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", "got 0"},
		{"negative shutdown timeout", map[string]string{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "-1"}, "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", "got -1"},
		{"word shutdown timeout", map[string]string{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "ten"}, "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", `got "ten"`},
		{"is slave", map[string]string{"IS_SLAVE": "maybe"}, "IS_SLAVE", `"maybe" is not a boolean`},
		{"time zone", map[string]string{"TZ": "Mars/Olympus"}, "TZ", `unknown time zone "Mars/Olympus"`},
		{"concurrency zero", map[string]string{"MAX_CONCURRENT_REQUESTS": "0"}, "MAX_CONCURRENT_REQUESTS", "must be at least 1, got 0"},
		{"concurrency word", map[string]string{"MAX_CONCURRENT_REQUESTS": "many"}, "MAX_CONCURRENT_REQUESTS", `"many" is not an integer`},
		{"enable cors", map[string]string{"ENABLE_CORS": "nope"}, "ENABLE_CORS", `"nope" is not a boolean`},
		{"cors without origins", map[string]string{"ENABLE_CORS": "true"}, "ALLOWED_ORIGINS", "required when ENABLE_CORS is true"},
		{"allow credentials", map[string]string{"ALLOW_CREDENTIALS": "2"}, "ALLOW_CREDENTIALS", `"2" is not a boolean`},
		{"log level", map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL", `unknown level "loud" (want debug, info, warn or error)`},
		{"log level trace", map[string]string{"LOG_LEVEL": "trace"}, "LOG_LEVEL", `unknown level "trace"`},
		{"log format", map[string]string{"LOG_FORMAT": "xml"}, "LOG_FORMAT", `unknown format "xml" (want text or json)`},
		{"log enable file", map[string]string{"LOG_ENABLE_FILE": "sometimes"}, "LOG_ENABLE_FILE", `"sometimes" is not a boolean`},
		{"metrics public", map[string]string{"METRICS_PUBLIC": "x"}, "METRICS_PUBLIC", `"x" is not a boolean`},
		{"nats url scheme", map[string]string{"NATS_URL": "http://n1:4222"}, "NATS_URL", `"http://n1:4222" must be a nats://, tls://, ws:// or wss:// URL`},
		{"nats url without scheme", map[string]string{"NATS_URL": "n1:4222"}, "NATS_URL", `"n1:4222"`},
		{"nats url without host", map[string]string{"NATS_URL": "nats://"}, "NATS_URL", "has no host"},
		{"nats url bad port", map[string]string{"NATS_URL": "nats://n1:99999"}, "NATS_URL", "invalid port"},
		{"nats url unparsable", map[string]string{"NATS_URL": "nats://n1:4222,nats://[::1"}, "NATS_URL", "is not a valid URL"},
		{"nats listen without port", map[string]string{"NATS_LISTEN": "4222"}, "NATS_LISTEN", `"4222" is not host:port`},
		{"nats listen word port", map[string]string{"NATS_LISTEN": "0.0.0.0:nats"}, "NATS_LISTEN", "invalid port"},
		{"nats listen port too high", map[string]string{"NATS_LISTEN": ":70000"}, "NATS_LISTEN", "invalid port"},
		{"nats creds missing", map[string]string{"NATS_URL": "nats://n1", "NATS_CREDS": missing}, "NATS_CREDS", "does not exist"},
		{"nats creds is a directory", map[string]string{"NATS_URL": "nats://n1", "NATS_CREDS": dir}, "NATS_CREDS", "is a directory"},
		{"nats tls ca missing", map[string]string{"NATS_URL": "nats://n1", "NATS_TLS_CA": missing}, "NATS_TLS_CA", "does not exist"},
		{"nats tls cert missing", map[string]string{"NATS_URL": "nats://n1", "NATS_TLS_CERT": missing, "NATS_TLS_KEY": file}, "NATS_TLS_CERT", "does not exist"},
		{"nats tls key missing", map[string]string{"NATS_URL": "nats://n1", "NATS_TLS_CERT": file, "NATS_TLS_KEY": missing}, "NATS_TLS_KEY", "does not exist"},
		{"nats tls cert without key", map[string]string{"NATS_URL": "nats://n1", "NATS_TLS_CERT": file}, "NATS_TLS_KEY", "required when NATS_TLS_CERT is set"},
		{"nats tls key without cert", map[string]string{"NATS_URL": "nats://n1", "NATS_TLS_KEY": file}, "NATS_TLS_CERT", "required when NATS_TLS_KEY is set"},
		{"nats password without user", map[string]string{"NATS_URL": "nats://n1", "NATS_PASSWORD": "pw-value"}, "NATS_PASSWORD", "set without NATS_USER"},
		{"nats replicas word", map[string]string{"NATS_REPLICAS": "three"}, "NATS_REPLICAS", `"three" is not an integer`},
		{"nats replicas zero", map[string]string{"NATS_REPLICAS": "0"}, "NATS_REPLICAS", "must be between 1 and 5, got 0"},
		{"nats replicas too many", map[string]string{"NATS_URL": "nats://n1", "NATS_REPLICAS": "7"}, "NATS_REPLICAS", "got 7"},
		{"nats replicas on the embedded server", map[string]string{"NATS_REPLICAS": "3"}, "NATS_REPLICAS", "need NATS_URL"},
		{"reqlog max age word", map[string]string{"REQLOG_MAX_AGE": "three days"}, "REQLOG_MAX_AGE", `"three days" is not a duration`},
		{"reqlog max age in days", map[string]string{"REQLOG_MAX_AGE": "3d"}, "REQLOG_MAX_AGE", `"3d" is not a duration`},
		{"reqlog max age too short", map[string]string{"REQLOG_MAX_AGE": "30s"}, "REQLOG_MAX_AGE", "must be at least 1m0s, got 30s"},
		{"reqlog max age negative", map[string]string{"REQLOG_MAX_AGE": "-72h"}, "REQLOG_MAX_AGE", "must be at least"},
		{"leader lease too short", map[string]string{"LEADER_LEASE": "200ms"}, "LEADER_LEASE", "must be at least 1s, got 200ms"},
		{"nats sync word", map[string]string{"NATS_SYNC": "often"}, "NATS_SYNC", `"often" is not a duration`},
		{"nats sync too short", map[string]string{"NATS_SYNC": "1ms"}, "NATS_SYNC", "must be \"always\" or a duration of at least 10ms, got 1ms"},
		{"reqlog max bytes word", map[string]string{"REQLOG_MAX_BYTES": "lots"}, "REQLOG_MAX_BYTES", `"lots" is not a size`},
		{"reqlog max bytes unknown unit", map[string]string{"REQLOG_MAX_BYTES": "1PiB"}, "REQLOG_MAX_BYTES", `"1PiB" is not a size`},
		{"reqlog max bytes overflow", map[string]string{"REQLOG_MAX_BYTES": "99999999999TiB"}, "REQLOG_MAX_BYTES", "is not a size"},
		{"reqlog max bytes too small", map[string]string{"REQLOG_MAX_BYTES": "1KiB"}, "REQLOG_MAX_BYTES", "must be at least 1MiB, got 1024 bytes"},
		{"node name with a space", map[string]string{"NODE_NAME": "node 1"}, "NODE_NAME", `"node 1" may contain only`},
		{"node name with a slash", map[string]string{"NODE_NAME": "a/b"}, "NODE_NAME", `"a/b"`},
		{"node name with a star", map[string]string{"NODE_NAME": "node*"}, "NODE_NAME", `"node*"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := load(t, tt.env)
			if err == nil {
				t.Fatalf("no error, config %+v", c)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("a config came back with the error: %+v", c)
			}
			lines := errorLines(err)
			if len(lines) != 1 {
				t.Fatalf("want one problem, got %d:\n%v", len(lines), err)
			}
			if prefix := tt.variable + ": "; !strings.HasPrefix(lines[0], prefix) {
				t.Errorf("error %q does not start with %q", lines[0], prefix)
			}
			if !strings.Contains(lines[0], tt.want) {
				t.Errorf("error %q does not contain %q", lines[0], tt.want)
			}
		})
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := load(t, map[string]string{
		"PORT":                "abc",
		"SERVER_READ_TIMEOUT": "-5",
		"IS_SLAVE":            "maybe",
		"LOG_LEVEL":           "loud",
		"LOG_FORMAT":          "xml",
		"ENABLE_CORS":         "true",
		"NATS_URL":            "http://x",
		"NATS_REPLICAS":       "9",
		"NODE_NAME":           "bad name",
	})
	want := []string{
		`PORT: "abc" is not an integer`,
		`SERVER_READ_TIMEOUT: must be a positive number of seconds, got -5`,
		`IS_SLAVE: "maybe" is not a boolean`,
		`LOG_LEVEL: unknown level "loud" (want debug, info, warn or error)`,
		`LOG_FORMAT: unknown format "xml"`,
		`ALLOWED_ORIGINS: required when ENABLE_CORS is true`,
		`NATS_URL: "http://x"`,
		`NATS_REPLICAS: must be between 1 and 5, got 9`,
		`NODE_NAME: "bad name"`,
	}
	lines := errorLines(err)
	if len(lines) != len(want) {
		t.Errorf("want %d lines, got %d:\n%v", len(want), len(lines), err)
	}
	for _, w := range want {
		t.Run(strings.SplitN(w, ":", 2)[0], func(t *testing.T) {
			t.Parallel()
			for _, l := range lines {
				if strings.HasPrefix(l, w) {
					return
				}
			}
			t.Errorf("no line starts with %q in:\n%v", w, err)
		})
	}
}

func TestLoadConfigDotenv(t *testing.T) {
	t.Parallel()
	const secret = "dotenv-secret-ZQ81"
	tests := []struct {
		name    string
		dotenv  string // file content; "" means no file
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string // part of the error; "" means no error
	}{
		{
			name:   "file supplies values",
			dotenv: "# comment\nPORT=4000\nexport HOST=127.0.0.1\nLOG_LEVEL=\"debug\"\nAUTH_KEY='a-strong-admin-key-from-file'\n",
			check: func(t *testing.T, c Config) {
				if c.Port != 4000 || c.Host != "127.0.0.1" || c.Log.Level != zerolog.DebugLevel ||
					c.AuthKey != "a-strong-admin-key-from-file" || c.AuthKeyFromDataDir {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:   "environment wins",
			dotenv: "PORT=4000\nHOST=127.0.0.1\nDATA_DIR=/from/file\n",
			env:    map[string]string{"PORT": "5000", "DATA_DIR": "/from/env"},
			check: func(t *testing.T, c Config) {
				if c.Port != 5000 || c.DataDir != "/from/env" || c.Host != "127.0.0.1" {
					t.Errorf("got port %d, data dir %q, host %q", c.Port, c.DataDir, c.Host)
				}
			},
		},
		{
			name:   "an empty environment value is unset",
			dotenv: "PORT=4000\n",
			env:    map[string]string{"PORT": ""},
			check: func(t *testing.T, c Config) {
				if c.Port != 4000 {
					t.Errorf("Port = %d", c.Port)
				}
			},
		},
		{
			name:    "a bad value in the file is named",
			dotenv:  "PORT=abc\n",
			wantErr: `PORT: "abc" is not an integer`,
		},
		{
			name:    "a bad value in the file hidden by the environment is not",
			dotenv:  "PORT=abc\n",
			env:     map[string]string{"PORT": "4000"},
			check:   func(t *testing.T, c Config) {},
			wantErr: "",
		},
		{
			name:    "malformed file",
			dotenv:  "AUTH_KEY=\"" + secret + "\nPORT=1\n",
			wantErr: "malformed .env file",
		},
		{
			name:    "bad variable name",
			dotenv:  "GOOD=1\nBAD-NAME=" + secret + "\n",
			wantErr: "malformed .env file",
		},
		{
			name:  "missing file",
			check: func(t *testing.T, c Config) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), ".env")
			if tt.dotenv != "" {
				writeFile(t, path, tt.dotenv)
			}
			c, err := LoadConfig(lookupMap(withNode(tt.env)), path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, config %+v", c)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error repeats a secret: %q", err)
			}
			if strings.Contains(tt.wantErr, "malformed") && !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file %q", err, path)
			}
		})
	}
}

func TestLoadConfigDotenvUnreadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() // a directory where the file should be
	_, err := LoadConfig(lookupMap(withNode(nil)), dir)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("want an error naming %q, got %v", dir, err)
	}
}

func TestLoadConfigNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	const marker = "Sekr1tMarker"
	secrets := map[string]string{
		"AUTH_KEY":       "admin-" + marker,   // weak
		"ENCRYPTION_KEY": "123456" + marker,   // weak
		"NATS_PASSWORD":  "password" + marker, // without NATS_USER: an error
		"NATS_TOKEN":     marker,
		"DATABASE_DSN":   "postgres://u:" + marker + "@db/gpt",
		"REDIS_DSN":      "redis://:" + marker + "@redis:6379/0",
	}
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"secrets alone", nil},
		{"with a bad port", map[string]string{"PORT": "abc"}},
		{"with a bad NATS URL holding a password", map[string]string{"NATS_URL": "nats://user:" + marker + "@n1:99999"}},
		{"with an unparsable NATS URL holding a password", map[string]string{"NATS_URL": "nats://user:" + marker + "@[::1"}},
		{"with a valid config", map[string]string{"NATS_URL": "nats://n1", "NATS_USER": "svc"}},
		{"on the embedded server", map[string]string{"NATS_USER": "svc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for k, v := range secrets {
				env[k] = v
			}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := load(t, env)
			if err != nil && strings.Contains(err.Error(), marker) {
				t.Errorf("error shows a secret:\n%v", err)
			}
			for _, w := range c.Warnings {
				if strings.Contains(w, marker) {
					t.Errorf("warning shows a secret: %q", w)
				}
			}
		})
	}
}

func TestLoadConfigWarnings(t *testing.T) {
	t.Parallel()
	const strong = "a-strong-node-key-0042x"
	tests := []struct {
		name string
		env  map[string]string
		want []string // each a part of one warning; nil means no warning
	}{
		{"none", map[string]string{"AUTH_KEY": strong}, nil},
		{"no encryption key", map[string]string{"AUTH_KEY": strong, "ENCRYPTION_KEY": ""}, []string{"ENCRYPTION_KEY is not set"}},
		{"several with no encryption key", map[string]string{"AUTH_KEY": "admin", "ENCRYPTION_KEY": ""}, []string{"AUTH_KEY is weak", "ENCRYPTION_KEY is not set"}},
		{"default auth key", nil, []string{"AUTH_KEY is not set"}},
		{"short auth key", map[string]string{"AUTH_KEY": "short-key"}, []string{"AUTH_KEY is weak"}},
		{"auth key with a common word", map[string]string{"AUTH_KEY": "my-long-PassWord-value-xyz"}, []string{"AUTH_KEY is weak"}},
		{"auth key with sk-123456", map[string]string{"AUTH_KEY": "sk-1234567890abcdefgh"}, []string{"AUTH_KEY is weak"}},
		{"weak encryption key", map[string]string{"AUTH_KEY": strong, "ENCRYPTION_KEY": "ADMIN-encryption-key-long"}, []string{"ENCRYPTION_KEY is weak"}},
		{"strong encryption key", map[string]string{"AUTH_KEY": strong, "ENCRYPTION_KEY": "an-encryption-key-long-enough"}, nil},
		{"redis", map[string]string{"AUTH_KEY": strong, "REDIS_DSN": "redis://localhost:6379"}, []string{"REDIS_DSN is ignored: JetStream replaces Redis"}},
		{"any origin", map[string]string{"AUTH_KEY": strong, "ENABLE_CORS": "true", "ALLOWED_ORIGINS": "https://a.example,*"}, []string{`ALLOWED_ORIGINS contains "*"`}},
		{"any origin with CORS off", map[string]string{"AUTH_KEY": strong, "ALLOWED_ORIGINS": "*"}, nil},
		{"short shutdown timeout", map[string]string{"AUTH_KEY": strong, "SERVER_GRACEFUL_SHUTDOWN_TIMEOUT": "5"}, []string{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT: 5 s is below the minimum, using 10 s"}},
		{"external NATS settings on the embedded server", map[string]string{"AUTH_KEY": strong, "NATS_USER": "svc", "NATS_TOKEN": "tok"}, []string{"NATS_USER, NATS_TOKEN ignored"}},
		{"listener with external NATS", map[string]string{"AUTH_KEY": strong, "NATS_URL": "nats://n1", "NATS_LISTEN": ":4222"}, []string{"NATS_LISTEN is ignored"}},
		{"several", map[string]string{"AUTH_KEY": "admin", "REDIS_DSN": "redis://r"}, []string{"AUTH_KEY is weak", "REDIS_DSN is ignored"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"ENCRYPTION_KEY": "an-encryption-key-long-enough"} // unless the case says otherwise
			for k, v := range tt.env {
				env[k] = v
			}
			c := mustLoad(t, env)
			if len(c.Warnings) != len(tt.want) {
				t.Fatalf("want %d warnings, got %q", len(tt.want), c.Warnings)
			}
			for i, w := range tt.want {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q does not contain %q", c.Warnings[i], w)
				}
			}
		})
	}
}

func TestConfigListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		port int
		want string
	}{
		{"0.0.0.0", 3001, "0.0.0.0:3001"},
		{"", 80, ":80"},
		{"::1", 3001, "[::1]:3001"},
		{"localhost", 65535, "localhost:65535"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := (Config{Host: tt.host, Port: tt.port}).ListenAddr(); got != tt.want {
				t.Errorf("ListenAddr() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigUsesEmbeddedNATS(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		urls []string
		want bool
	}{
		{"no URL", nil, true},
		{"one URL", []string{"nats://n1"}, false},
		{"three URLs", []string{"nats://n1", "nats://n2", "nats://n3"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := (Config{NATS: NATSConfig{URLs: tt.urls}}).UsesEmbeddedNATS(); got != tt.want {
				t.Errorf("UsesEmbeddedNATS() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	valid := func() Config {
		c := Config{NodeName: "node-1"}
		c.setDefaults()
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string // variables named, in order; nil means valid
	}{
		{"defaults", func(c *Config) {}, nil},
		{"empty", func(c *Config) { *c = Config{} }, []string{
			"PORT", "SERVER_READ_TIMEOUT", "SERVER_WRITE_TIMEOUT", "SERVER_IDLE_TIMEOUT",
			"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", "DATA_DIR", "DATABASE_DSN",
			"MAX_CONCURRENT_REQUESTS", "NODE_NAME", "REQLOG_MAX_AGE", "REQLOG_MAX_BYTES", "NATS_SYNC", "LEADER_LEASE", "LOG_FORMAT", "NATS_REPLICAS",
		}},
		{"sub-second timeout", func(c *Config) { c.ReadTimeout = -time.Second / 2 }, []string{"SERVER_READ_TIMEOUT"}},
		{"trace level", func(c *Config) { c.Log.Level = zerolog.TraceLevel }, []string{"LOG_LEVEL"}},
		{"file without path", func(c *Config) { c.Log.EnableFile, c.Log.FilePath = true, "" }, []string{"LOG_FILE_PATH"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := valid()
			tt.change(&c)
			lines := errorLines(c.Validate())
			if len(lines) != len(tt.want) {
				t.Fatalf("want %d problems, got:\n%s", len(tt.want), strings.Join(lines, "\n"))
			}
			for i, v := range tt.want {
				if !strings.HasPrefix(lines[i], v+": ") {
					t.Errorf("line %d is %q, want it to name %s", i, lines[i], v)
				}
			}
		})
	}
}

func TestConfigPrintsNoSecrets(t *testing.T) {
	t.Parallel()
	const marker = "Sekr1tMarker"
	c := mustLoad(t, map[string]string{
		"AUTH_KEY":       "auth-" + marker,
		"ENCRYPTION_KEY": "enc-" + marker,
		"DATABASE_DSN":   "postgres://u:" + marker + "@db/gpt?sslmode=disable",
		"REDIS_DSN":      "redis://:" + marker + "@redis:6379/0",
		"NATS_URL":       "nats://svc:" + marker + "@n1:4222,nats://n2:4222",
		"NATS_USER":      "svc",
		"NATS_PASSWORD":  "pw-" + marker,
		"NATS_TOKEN":     "tok-" + marker,
	})
	var logged bytes.Buffer
	logger := zerolog.New(&logged)
	logger.Info().Object("config", c).Msg("starting")
	tests := []struct {
		name, text string
	}{
		{"%v", fmt.Sprintf("%v", c)},
		{"%+v", fmt.Sprintf("%+v", c)},
		{"%#v", fmt.Sprintf("%#v", c)},
		{"%s", fmt.Sprintf("%s", c)},
		{"pointer %+v", fmt.Sprintf("%+v", &c)},
		{"NATS %+v", fmt.Sprintf("%+v", c.NATS)},
		{"NATS %#v", fmt.Sprintf("%#v", c.NATS)},
		{"zerolog object", logged.String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if strings.Contains(tt.text, marker) {
				t.Errorf("a secret is shown:\n%s", tt.text)
			}
			if !strings.Contains(tt.text, "n2:4222") {
				t.Errorf("the NATS URLs are missing:\n%s", tt.text)
			}
		})
	}
}

func TestRedactDSN(t *testing.T) {
	t.Parallel()
	tests := []struct{ dsn, want string }{
		{"data/gpt-load.db", "data/gpt-load.db"},
		{"postgres://user:pw@db:5432/gpt?sslmode=disable", "postgres://REDACTED@db:5432/gpt?sslmode=disable"},
		{"user:pw@tcp(db:3306)/gpt?parseTime=true", "REDACTED@tcp(db:3306)/gpt?parseTime=true"},
		{"host=db user=u password=pw dbname=gpt", "host=db user=u password=REDACTED dbname=gpt"},
		{"host=db PASSWORD=pw", "host=db PASSWORD=REDACTED"},
		{"postgres://db/gpt?password=pw&sslmode=disable", "postgres://db/gpt?password=REDACTED&sslmode=disable"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.dsn, func(t *testing.T) {
			t.Parallel()
			if got := redactDSN(tt.dsn); got != tt.want {
				t.Errorf("redactDSN(%q) = %q, want %q", tt.dsn, got, tt.want)
			}
		})
	}
}
