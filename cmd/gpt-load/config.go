package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // TZ must resolve even in images without a zoneinfo database

	"github.com/joho/godotenv"
	"github.com/rs/zerolog"
)

// Defaults of the static configuration (API.md section 8 and 8.3).
const (
	defaultHost                  = "0.0.0.0"
	defaultPort                  = 3001
	defaultReadTimeout           = 60 * time.Second
	defaultWriteTimeout          = 600 * time.Second
	defaultIdleTimeout           = 120 * time.Second
	defaultShutdownTimeout       = 10 * time.Second
	minShutdownTimeout           = 10 * time.Second
	defaultDataDir               = "./data"
	defaultDatabaseFile          = "gpt-load.db"
	defaultMaxConcurrentRequests = 100
	defaultLogLevel              = zerolog.InfoLevel
	defaultLogFormat             = "text"
	defaultLogDir                = "logs" // under DataDir
	defaultLogFile               = "app.log"
	defaultAllowedMethods        = "GET,POST,PUT,DELETE,OPTIONS"
	defaultAllowedHeaders        = "*"
	defaultNATSReplicas          = 1
	maxNATSReplicas              = 5
	minKeyLength                 = 16
	defaultReqLogMaxAge          = 72 * time.Hour
	defaultReqLogMaxBytes        = 1 << 30
	minReqLogMaxAge              = time.Minute
	minReqLogMaxBytes            = 1 << 20
	defaultLeaderLease           = 10 * time.Second
	minLeaderLease               = time.Second
	// defaultNATSSync bounds what a power loss can take from the embedded server's store
	// (acknowledged but not yet on disk); nats-server's own default is two minutes.
	defaultNATSSync = time.Second
	minNATSSync     = 10 * time.Millisecond
)

// Config is the static configuration of a node, read once at start-up from the
// environment and an optional .env file.
// LimitsTuning is the clock and round period of the proxy-key limiter (zero: the wall clock
// and one second).
type LimitsTuning struct {
	Interval time.Duration
	Now      func() time.Time
}

type Config struct {
	Host string // HOST
	Port int    // PORT, 1..65535

	ReadTimeout     time.Duration // SERVER_READ_TIMEOUT
	WriteTimeout    time.Duration // SERVER_WRITE_TIMEOUT
	IdleTimeout     time.Duration // SERVER_IDLE_TIMEOUT
	ShutdownTimeout time.Duration // SERVER_GRACEFUL_SHUTDOWN_TIMEOUT, at least 10 s

	IsSlave bool // IS_SLAVE: never lead, never run the background duties

	// LeaderLease (LEADER_LEASE) is the lease of the node that runs the background duties
	// in a cluster: a leader that dies is replaced within it. Tasks of a node that died
	// are marked failed after it, too.
	LeaderLease time.Duration

	TZ       string         // TZ as given; empty when unset
	Location *time.Location // TZ resolved; time.Local when TZ is unset

	// AuthKey is the admin key (AUTH_KEY). When AUTH_KEY is unset it is empty here and
	// AuthKeyFromDataDir is true: the node then uses the key kept in DATA_DIR/admin.key,
	// generated at random on the first start.
	AuthKey            string
	AuthKeyFromDataDir bool

	EncryptionKey string // ENCRYPTION_KEY; empty disables at-rest encryption
	DatabaseDSN   string // DATABASE_DSN; default DataDir/gpt-load.db
	RedisDSN      string // REDIS_DSN; accepted for compatibility and ignored

	MaxConcurrentRequests int // MAX_CONCURRENT_REQUESTS, at least 1

	CORS CORSConfig
	Log  LogConfig

	DataDir string // DATA_DIR: all on-disk state of the node

	NATS NATSConfig

	NodeName      string // NODE_NAME; default the host name
	MetricsPublic bool   // METRICS_PUBLIC

	// ReqLog bounds the GL_REQLOG stream, the buffer between the proxy and SQL: a log
	// waiting longer than MaxAge, or beyond MaxBytes of waiting logs, is dropped unwritten.
	ReqLog ReqLogConfig

	// Warnings are non-fatal findings for main to log at start-up. They never
	// contain a secret.
	Warnings []string

	// Limits tunes the limits of named proxy keys; tests scale their time with it. It is
	// not read from the environment.
	Limits LimitsTuning `json:"-"`
}

// CORSConfig is the CORS middleware setting.
type CORSConfig struct {
	Enabled          bool     // ENABLE_CORS
	AllowedOrigins   []string // ALLOWED_ORIGINS; required when Enabled
	AllowedMethods   []string // ALLOWED_METHODS
	AllowedHeaders   []string // ALLOWED_HEADERS
	AllowCredentials bool     // ALLOW_CREDENTIALS
}

// LogConfig says how and where the node logs.
type LogConfig struct {
	Level      zerolog.Level // LOG_LEVEL: debug, info, warn or error
	Format     string        // LOG_FORMAT: text or json
	EnableFile bool          // LOG_ENABLE_FILE
	FilePath   string        // LOG_FILE_PATH; default DataDir/logs/app.log
}

// NATSConfig says which NATS the node uses. No URLs means an embedded server.
type NATSConfig struct {
	URLs     []string // NATS_URL, comma-separated
	Listen   string   // NATS_LISTEN: host:port of the embedded server's listener
	Creds    string   // NATS_CREDS: credentials file
	User     string   // NATS_USER
	Password string   // NATS_PASSWORD (secret)
	Token    string   // NATS_TOKEN (secret)
	TLSCA    string   // NATS_TLS_CA
	TLSCert  string   // NATS_TLS_CERT
	TLSKey   string   // NATS_TLS_KEY
	Replicas int      // NATS_REPLICAS, 1..5
	// Sync (NATS_SYNC) is how often the embedded server forces its store to disk (a Go
	// duration); SyncAlways ("always") forces it after every write.
	Sync       time.Duration
	SyncAlways bool
}

// ReqLogConfig holds the limits of the request-log stream.
type ReqLogConfig struct {
	MaxAge   time.Duration // REQLOG_MAX_AGE, a Go duration (72h), at least 1m
	MaxBytes int64         // REQLOG_MAX_BYTES, bytes or with a unit (512MiB, 2GiB), at least 1 MiB
}

// LoadConfig reads the configuration from lookup (os.LookupEnv in production)
// and from the .env file at dotenvPath, which supplies the variables lookup
// does not set (a variable set to an empty string counts as unset). A missing
// .env file is fine. An empty value means "use the default"; any other value
// that cannot be used is an error. LoadConfig reports every bad variable in one
// error, one per line, and never repeats the value of a secret.
func LoadConfig(lookup func(string) (string, bool), dotenvPath string) (Config, error) {
	file, err := readDotenv(dotenvPath)
	if err != nil {
		return Config{}, err
	}
	env := &envReader{lookup: lookup, file: file}
	var c Config

	// Strings, lists and booleans first: for them an empty value is the unset
	// value, so setDefaults can fill what is missing, including the paths that
	// derive from DATA_DIR.
	env.String("HOST", &c.Host)
	env.Bool("IS_SLAVE", &c.IsSlave)
	env.String("TZ", &c.TZ)
	env.Secret("AUTH_KEY", &c.AuthKey)
	env.Secret("ENCRYPTION_KEY", &c.EncryptionKey)
	env.String("DATABASE_DSN", &c.DatabaseDSN) // never echoed: it may hold a password
	env.String("REDIS_DSN", &c.RedisDSN)
	env.Bool("ENABLE_CORS", &c.CORS.Enabled)
	env.List("ALLOWED_ORIGINS", &c.CORS.AllowedOrigins)
	env.List("ALLOWED_METHODS", &c.CORS.AllowedMethods)
	env.List("ALLOWED_HEADERS", &c.CORS.AllowedHeaders)
	env.Bool("ALLOW_CREDENTIALS", &c.CORS.AllowCredentials)
	env.String("LOG_FORMAT", &c.Log.Format)
	c.Log.Format = strings.ToLower(c.Log.Format)
	env.Bool("LOG_ENABLE_FILE", &c.Log.EnableFile)
	env.String("LOG_FILE_PATH", &c.Log.FilePath)
	env.String("DATA_DIR", &c.DataDir)
	env.List("NATS_URL", &c.NATS.URLs)
	env.String("NATS_LISTEN", &c.NATS.Listen)
	env.String("NATS_CREDS", &c.NATS.Creds)
	env.String("NATS_USER", &c.NATS.User)
	env.Secret("NATS_PASSWORD", &c.NATS.Password)
	env.Secret("NATS_TOKEN", &c.NATS.Token)
	env.String("NATS_TLS_CA", &c.NATS.TLSCA)
	env.String("NATS_TLS_CERT", &c.NATS.TLSCert)
	env.String("NATS_TLS_KEY", &c.NATS.TLSKey)
	env.String("NODE_NAME", &c.NodeName)
	env.Bool("METRICS_PUBLIC", &c.MetricsPublic)

	c.setDefaults()

	// Numbers and the level last: zero is a value there (an invalid one), not
	// "unset", so they overwrite the defaults and Validate sees what was given.
	env.Int("PORT", &c.Port)
	env.Seconds("SERVER_READ_TIMEOUT", &c.ReadTimeout)
	env.Seconds("SERVER_WRITE_TIMEOUT", &c.WriteTimeout)
	env.Seconds("SERVER_IDLE_TIMEOUT", &c.IdleTimeout)
	env.Seconds("SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	env.Int("MAX_CONCURRENT_REQUESTS", &c.MaxConcurrentRequests)
	c.Log.Level = defaultLogLevel
	env.Level("LOG_LEVEL", &c.Log.Level)
	env.Int("NATS_REPLICAS", &c.NATS.Replicas)
	env.Duration("REQLOG_MAX_AGE", &c.ReqLog.MaxAge)
	env.Bytes("REQLOG_MAX_BYTES", &c.ReqLog.MaxBytes)
	env.Duration("LEADER_LEASE", &c.LeaderLease)
	if v, ok := env.value("NATS_SYNC"); ok && strings.EqualFold(v, "always") {
		c.NATS.SyncAlways = true
	} else {
		env.Duration("NATS_SYNC", &c.NATS.Sync)
	}

	var warnings []string
	if c.ShutdownTimeout > 0 && c.ShutdownTimeout < minShutdownTimeout {
		warnings = append(warnings, fmt.Sprintf(
			"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT: %s s is below the minimum, using %s s",
			seconds(c.ShutdownTimeout), seconds(minShutdownTimeout)))
		c.ShutdownTimeout = minShutdownTimeout
	}

	if err := errors.Join(errors.Join(env.errs...), c.Validate()); err != nil {
		return Config{}, err
	}
	c.Warnings = append(warnings, c.warnings()...)
	return c, nil
}

// ListenAddr is the address the HTTP server listens on.
func (c Config) ListenAddr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// UsesEmbeddedNATS reports whether the node runs its own in-process NATS server.
func (c Config) UsesEmbeddedNATS() bool {
	return len(c.NATS.URLs) == 0
}

// String describes the configuration with every secret hidden, so that a
// Config printed by mistake shows none.
func (c Config) String() string {
	type plain Config // without methods, so Sprintf does not recurse
	r := plain(c)
	r.AuthKey = mask(r.AuthKey)
	r.EncryptionKey = mask(r.EncryptionKey)
	r.DatabaseDSN = redactDSN(r.DatabaseDSN)
	r.RedisDSN = redactDSN(r.RedisDSN)
	return fmt.Sprintf("%+v", r) // r.NATS prints through NATSConfig.String
}

// GoString is String, so that %#v hides the secrets too.
func (c Config) GoString() string { return c.String() }

// String describes the NATS setting with every secret hidden.
func (n NATSConfig) String() string {
	type plain NATSConfig
	r := plain(n)
	r.URLs = redactedURLs(n.URLs)
	r.Password = mask(r.Password)
	r.Token = mask(r.Token)
	return fmt.Sprintf("%+v", r)
}

// GoString is String, so that %#v hides the secrets too.
func (n NATSConfig) GoString() string { return n.String() }

// MarshalZerologObject logs the configuration without its secrets, for the
// start-up line: log.Info().Object("config", cfg).Msg("starting").
func (c Config) MarshalZerologObject(e *zerolog.Event) {
	e.Str("listen", c.ListenAddr()).
		Str("node", c.NodeName).
		Bool("is_slave", c.IsSlave).
		Str("data_dir", c.DataDir).
		Str("database", redactDSN(c.DatabaseDSN)).
		Str("tz", c.Location.String()).
		Bool("auth_key_from_data_dir", c.AuthKeyFromDataDir).
		Bool("encryption", c.EncryptionKey != "").
		Int("max_concurrent_requests", c.MaxConcurrentRequests).
		Bool("cors", c.CORS.Enabled).
		Str("log_level", c.Log.Level.String()).
		Str("log_format", c.Log.Format).
		Bool("metrics_public", c.MetricsPublic)
	if c.Log.EnableFile {
		e.Str("log_file", c.Log.FilePath)
	}
	if c.UsesEmbeddedNATS() {
		e.Str("nats", "embedded").Str("nats_listen", c.NATS.Listen)
	} else {
		e.Strs("nats", redactedURLs(c.NATS.URLs))
	}
	e.Int("nats_replicas", c.NATS.Replicas).
		Str("reqlog_max_age", c.ReqLog.MaxAge.String()).
		Int64("reqlog_max_bytes", c.ReqLog.MaxBytes).
		Str("leader_lease", c.LeaderLease.String())
	if c.UsesEmbeddedNATS() {
		sync := c.NATS.Sync.String()
		if c.NATS.SyncAlways {
			sync = "always"
		}
		e.Str("nats_sync", sync)
	}
}

// setDefaults fills every unset field: zero numbers, empty strings and lists.
// Log.Level is left alone, since its zero value is zerolog.DebugLevel.
func (c *Config) setDefaults() {
	if c.Host == "" {
		c.Host = defaultHost
	}
	if c.Port == 0 {
		c.Port = defaultPort
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = defaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = defaultShutdownTimeout
	}
	if c.Location == nil {
		if c.TZ == "" {
			c.Location = time.Local
		} else if loc, err := loadLocation(c.TZ); err == nil {
			c.Location = loc
		} // else Validate reports TZ
	}
	if c.AuthKey == "" {
		c.AuthKeyFromDataDir = true
	}
	if c.DataDir == "" {
		c.DataDir = defaultDataDir
	}
	if c.DatabaseDSN == "" {
		c.DatabaseDSN = filepath.Join(c.DataDir, defaultDatabaseFile)
	}
	if c.MaxConcurrentRequests == 0 {
		c.MaxConcurrentRequests = defaultMaxConcurrentRequests
	}
	c.CORS.setDefaults()
	c.Log.setDefaults(c.DataDir)
	c.NATS.setDefaults()
	if c.NodeName == "" {
		c.NodeName, _ = os.Hostname() // Validate reports an empty name
	}
	if c.ReqLog.MaxAge == 0 {
		c.ReqLog.MaxAge = defaultReqLogMaxAge
	}
	if c.NATS.Sync == 0 {
		c.NATS.Sync = defaultNATSSync
	}
	if c.LeaderLease == 0 {
		c.LeaderLease = defaultLeaderLease
	}
	if c.ReqLog.MaxBytes == 0 {
		c.ReqLog.MaxBytes = defaultReqLogMaxBytes
	}
}

func (c *CORSConfig) setDefaults() {
	if len(c.AllowedMethods) == 0 {
		c.AllowedMethods = strings.Split(defaultAllowedMethods, ",")
	}
	if len(c.AllowedHeaders) == 0 {
		c.AllowedHeaders = strings.Split(defaultAllowedHeaders, ",")
	}
}

func (l *LogConfig) setDefaults(dataDir string) {
	if l.Format == "" {
		l.Format = defaultLogFormat
	}
	if l.FilePath == "" {
		l.FilePath = filepath.Join(dataDir, defaultLogDir, defaultLogFile)
	}
}

func (n *NATSConfig) setDefaults() {
	if n.Replicas == 0 {
		n.Replicas = defaultNATSReplicas
	}
}

// Validate reports every problem of the configuration at once, one line per
// problem, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, varErrorf("PORT", "must be between 1 and 65535, got %d", c.Port))
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{
		{"SERVER_READ_TIMEOUT", c.ReadTimeout},
		{"SERVER_WRITE_TIMEOUT", c.WriteTimeout},
		{"SERVER_IDLE_TIMEOUT", c.IdleTimeout},
		{"SERVER_GRACEFUL_SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		if t.d <= 0 {
			errs = append(errs, varErrorf(t.name, "must be a positive number of seconds, got %s", seconds(t.d)))
		}
	}
	if c.TZ != "" {
		if _, err := loadLocation(c.TZ); err != nil {
			errs = append(errs, varErrorf("TZ", "unknown time zone %q", c.TZ))
		}
	}
	if c.DataDir == "" {
		errs = append(errs, varErrorf("DATA_DIR", "must not be empty"))
	}
	if c.DatabaseDSN == "" {
		errs = append(errs, varErrorf("DATABASE_DSN", "must not be empty"))
	}
	if c.MaxConcurrentRequests < 1 {
		errs = append(errs, varErrorf("MAX_CONCURRENT_REQUESTS", "must be at least 1, got %d", c.MaxConcurrentRequests))
	}
	if err := validNodeName(c.NodeName); err != nil {
		errs = append(errs, err)
	}
	if c.ReqLog.MaxAge < minReqLogMaxAge {
		errs = append(errs, varErrorf("REQLOG_MAX_AGE", "must be at least %s, got %s", minReqLogMaxAge, c.ReqLog.MaxAge))
	}
	if c.ReqLog.MaxBytes < minReqLogMaxBytes {
		errs = append(errs, varErrorf("REQLOG_MAX_BYTES", "must be at least 1MiB, got %d bytes", c.ReqLog.MaxBytes))
	}
	if !c.NATS.SyncAlways && c.NATS.Sync < minNATSSync {
		errs = append(errs, varErrorf("NATS_SYNC", "must be \"always\" or a duration of at least %s, got %s", minNATSSync, c.NATS.Sync))
	}
	if c.LeaderLease < minLeaderLease {
		errs = append(errs, varErrorf("LEADER_LEASE", "must be at least %s, got %s", minLeaderLease, c.LeaderLease))
	}
	errs = append(errs, c.CORS.Validate(), c.Log.Validate(), c.NATS.Validate())
	return errors.Join(errs...)
}

// Validate reports every problem of the CORS setting.
func (c CORSConfig) Validate() error {
	if c.Enabled && len(c.AllowedOrigins) == 0 {
		return varErrorf("ALLOWED_ORIGINS", "required when ENABLE_CORS is true")
	}
	return nil
}

// Validate reports every problem of the log setting.
func (l LogConfig) Validate() error {
	var errs []error
	if l.Level < zerolog.DebugLevel || l.Level > zerolog.ErrorLevel {
		errs = append(errs, varErrorf("LOG_LEVEL", "unsupported level %q (want debug, info, warn or error)", l.Level.String()))
	}
	if l.Format != "text" && l.Format != "json" {
		errs = append(errs, varErrorf("LOG_FORMAT", "unknown format %q (want text or json)", l.Format))
	}
	if l.EnableFile && l.FilePath == "" {
		errs = append(errs, varErrorf("LOG_FILE_PATH", "required when LOG_ENABLE_FILE is true"))
	}
	return errors.Join(errs...)
}

// Validate reports every problem of the NATS setting. It checks that the
// named files exist.
func (n NATSConfig) Validate() error {
	var errs []error
	for _, u := range n.URLs {
		if err := validNATSURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	if n.Listen != "" {
		if err := validListen(n.Listen); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range []struct{ name, path string }{
		{"NATS_CREDS", n.Creds},
		{"NATS_TLS_CA", n.TLSCA},
		{"NATS_TLS_CERT", n.TLSCert},
		{"NATS_TLS_KEY", n.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if err := fileExists(f.name, f.path); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case n.TLSCert != "" && n.TLSKey == "":
		errs = append(errs, varErrorf("NATS_TLS_KEY", "required when NATS_TLS_CERT is set"))
	case n.TLSKey != "" && n.TLSCert == "":
		errs = append(errs, varErrorf("NATS_TLS_CERT", "required when NATS_TLS_KEY is set"))
	}
	if n.Password != "" && n.User == "" {
		errs = append(errs, varErrorf("NATS_PASSWORD", "set without NATS_USER"))
	}
	switch {
	case n.Replicas < 1 || n.Replicas > maxNATSReplicas:
		errs = append(errs, varErrorf("NATS_REPLICAS", "must be between 1 and %d, got %d", maxNATSReplicas, n.Replicas))
	case n.Replicas > 1 && len(n.URLs) == 0:
		errs = append(errs, varErrorf("NATS_REPLICAS", "%d replicas need NATS_URL: the embedded server is a single node", n.Replicas))
	}
	return errors.Join(errs...)
}

// warnings lists the non-fatal findings. No secret appears in them.
func (c Config) warnings() []string {
	var w []string
	if c.AuthKeyFromDataDir {
		w = append(w, "AUTH_KEY is not set: the admin key is the one kept in DATA_DIR/"+adminKeyFileName+" (generated at random on the first start); set AUTH_KEY to choose your own")
	} else if weakKey(c.AuthKey) {
		w = append(w, weakKeyWarning("AUTH_KEY"))
	}
	if c.EncryptionKey == "" {
		w = append(w, "ENCRYPTION_KEY is not set: upstream keys and proxy keys rest in clear in the event log, snapshots and the database; set it (then run migrate-keys) to encrypt them")
	} else if weakKey(c.EncryptionKey) {
		w = append(w, weakKeyWarning("ENCRYPTION_KEY"))
	}
	if c.RedisDSN != "" {
		w = append(w, "REDIS_DSN is ignored: JetStream replaces Redis")
	}
	if c.CORS.Enabled {
		for _, o := range c.CORS.AllowedOrigins {
			if o == "*" {
				w = append(w, "ALLOWED_ORIGINS contains \"*\": every web origin may call the API from a browser")
				break
			}
		}
	}
	if c.UsesEmbeddedNATS() {
		var unused []string
		for _, v := range []struct{ name, value string }{
			{"NATS_CREDS", c.NATS.Creds},
			{"NATS_USER", c.NATS.User},
			{"NATS_PASSWORD", c.NATS.Password},
			{"NATS_TOKEN", c.NATS.Token},
			{"NATS_TLS_CA", c.NATS.TLSCA},
			{"NATS_TLS_CERT", c.NATS.TLSCert},
			{"NATS_TLS_KEY", c.NATS.TLSKey},
		} {
			if v.value != "" {
				unused = append(unused, v.name)
			}
		}
		if len(unused) > 0 {
			w = append(w, strings.Join(unused, ", ")+" ignored: they apply to an external NATS and NATS_URL is not set")
		}
	} else if c.NATS.Listen != "" {
		w = append(w, "NATS_LISTEN is ignored: it applies to the embedded server and NATS_URL is set")
	}
	return w
}

func weakKeyWarning(name string) string {
	return fmt.Sprintf("%s is weak: use at least %d characters and avoid common words such as password, admin, secret or 123456", name, minKeyLength)
}

// weakKey reports whether a secret is short or contains a commonly used word.
func weakKey(key string) bool {
	if len([]rune(key)) < minKeyLength {
		return true
	}
	lower := strings.ToLower(key)
	for _, word := range []string{"password", "sk-123456", "123456", "admin", "secret"} {
		if strings.Contains(lower, word) {
			return true
		}
	}
	return false
}

// loadLocation resolves a TZ value. A leading colon is allowed, as in POSIX.
func loadLocation(tz string) (*time.Location, error) {
	return time.LoadLocation(strings.TrimPrefix(tz, ":"))
}

func validNodeName(name string) error {
	if name == "" {
		return varErrorf("NODE_NAME", "must be set (the host name is not available)")
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return varErrorf("NODE_NAME", "%q may contain only letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

func validNATSURL(raw string) error {
	shown := redactUserinfo(raw)
	u, err := url.Parse(raw)
	if err != nil {
		// url's own error repeats the whole URL, password included.
		return varErrorf("NATS_URL", "%q is not a valid URL", shown)
	}
	switch strings.ToLower(u.Scheme) {
	case "nats", "tls", "ws", "wss":
	default:
		return varErrorf("NATS_URL", "%q must be a nats://, tls://, ws:// or wss:// URL", shown)
	}
	if u.Hostname() == "" {
		return varErrorf("NATS_URL", "%q has no host", shown)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return varErrorf("NATS_URL", "%q has an invalid port", shown)
		}
	}
	return nil
}

func validListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return varErrorf("NATS_LISTEN", "%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return varErrorf("NATS_LISTEN", "%q has an invalid port (want 0 to 65535)", addr)
	}
	return nil
}

func fileExists(name, path string) error {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return varErrorf(name, "file %q does not exist", path)
	case err != nil:
		return varErrorf(name, "file %q: %v", path, err)
	case info.IsDir():
		return varErrorf(name, "%q is a directory, not a file", path)
	}
	return nil
}

// redactUserinfo hides the user and password of a URL-like string.
func redactUserinfo(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + len("://")
	}
	if at := strings.LastIndex(s[start:], "@"); at >= 0 {
		return s[:start] + "REDACTED" + s[start+at:]
	}
	return s
}

// mask hides a secret, telling only whether it is set.
func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "REDACTED"
}

func redactedURLs(urls []string) []string {
	if urls == nil {
		return nil
	}
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = redactUserinfo(u)
	}
	return out
}

// redactDSN hides the password of a URL, MySQL or key=value DSN.
func redactDSN(dsn string) string {
	dsn = redactUserinfo(dsn)
	lower := strings.ToLower(dsn)
	const key = "password="
	var b strings.Builder
	for {
		i := strings.Index(lower, key)
		if i < 0 {
			b.WriteString(dsn)
			return b.String()
		}
		i += len(key)
		end := strings.IndexAny(dsn[i:], " &;")
		if end < 0 {
			end = len(dsn) - i
		}
		b.WriteString(dsn[:i])
		b.WriteString("REDACTED")
		dsn, lower = dsn[i+end:], lower[i+end:]
	}
}

// seconds formats a duration as a number of seconds.
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// readDotenv reads the .env file, if any. Its parse errors are not repeated,
// since they quote the file's content, secrets included.
func readDotenv(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	m, err := godotenv.Read(path)
	var pathErr *fs.PathError
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case errors.As(err, &pathErr):
		return nil, fmt.Errorf("read %s: %w", path, err)
	default:
		return nil, fmt.Errorf("read %s: malformed .env file (check variable names and quotes)", path)
	}
}

// varError is one problem with one variable.
type varError struct {
	Name string
	Msg  string
}

func (e *varError) Error() string { return e.Name + ": " + e.Msg }

func varErrorf(name, format string, args ...any) error {
	return &varError{Name: name, Msg: fmt.Sprintf(format, args...)}
}

// envReader reads variables from the environment, then the .env file, and
// collects the problems it meets.
type envReader struct {
	lookup func(string) (string, bool)
	file   map[string]string
	errs   []error
}

// raw returns the value of name, untrimmed; blank values count as unset.
func (r *envReader) raw(name string) (string, bool) {
	if v, ok := r.lookup(name); ok && strings.TrimSpace(v) != "" {
		return v, true
	}
	if v, ok := r.file[name]; ok && strings.TrimSpace(v) != "" {
		return v, true
	}
	return "", false
}

func (r *envReader) value(name string) (string, bool) {
	v, ok := r.raw(name)
	return strings.TrimSpace(v), ok
}

func (r *envReader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, varErrorf(name, format, args...))
}

// String sets *dst when name is set.
func (r *envReader) String(name string, dst *string) {
	if v, ok := r.value(name); ok {
		*dst = v
	}
}

// Secret sets *dst to the value of name exactly as given.
func (r *envReader) Secret(name string, dst *string) {
	if v, ok := r.raw(name); ok {
		*dst = v
	}
}

// List sets *dst to the comma-separated items of name, trimmed, empties dropped.
func (r *envReader) List(name string, dst *[]string) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	var items []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	*dst = items
}

func (r *envReader) Bool(name string, dst *bool) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		*dst = true
	case "false", "0", "no", "off":
		*dst = false
	default:
		r.fail(name, "%q is not a boolean (want true/false, 1/0, yes/no or on/off)", v)
	}
}

func (r *envReader) Int(name string, dst *int) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	switch {
	case errors.Is(err, strconv.ErrRange):
		r.fail(name, "%q is out of range", v)
	case err != nil:
		r.fail(name, "%q is not an integer", v)
	default:
		*dst = n
	}
}

// Seconds reads a whole number of seconds. Validate checks the sign.
func (r *envReader) Seconds(name string, dst *time.Duration) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	n, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err != nil:
		r.fail(name, "must be a positive whole number of seconds, got %q", v)
	case n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second):
		r.fail(name, "%q seconds is out of range", v)
	default:
		*dst = time.Duration(n) * time.Second
	}
}

// Duration reads a Go duration ("72h", "90m"). Validate checks the range.
func (r *envReader) Duration(name string, dst *time.Duration) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, "%q is not a duration (e.g. 72h, 90m)", v)
		return
	}
	*dst = d
}

// byteUnits are the units Bytes accepts, longest first.
var byteUnits = []struct {
	suffix string
	n      int64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
}

// Bytes reads a size: a whole number of bytes, or one with a unit (512MiB, 2GiB, 1GB).
// Validate checks the range.
func (r *envReader) Bytes(name string, dst *int64) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	num, mult := v, int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(strings.ToLower(v), strings.ToLower(u.suffix)) {
			num, mult = strings.TrimSpace(v[:len(v)-len(u.suffix)]), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		r.fail(name, "%q is not a size (bytes, or e.g. 512MiB, 2GiB)", v)
		return
	}
	*dst = n * mult
}

func (r *envReader) Level(name string, dst *zerolog.Level) {
	v, ok := r.value(name)
	if !ok {
		return
	}
	switch strings.ToLower(v) {
	case "debug":
		*dst = zerolog.DebugLevel
	case "info":
		*dst = zerolog.InfoLevel
	case "warn":
		*dst = zerolog.WarnLevel
	case "error":
		*dst = zerolog.ErrorLevel
	default:
		r.fail(name, "unknown level %q (want debug, info, warn or error)", v)
	}
}
