package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/embedded"
	"gpt-load/frontend"
	"gpt-load/httpapi"
	"gpt-load/httpapi/tasks"
	"gpt-load/projections"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
	"gpt-load/proxy"
	"gpt-load/proxy/limits"
)

// clusterWait is how long a starting node waits for JetStream to answer (a fresh cluster
// elects its meta leader, then each replicated stream its own) before it gives up.
const clusterWait = 2 * time.Minute

// node is one running gpt-load: everything main wires together.
type node struct {
	cfg      Config
	log      zerolog.Logger
	nats     *embedded.Server // nil with an external NATS
	nc       *nats.Conn
	store    *events.Store
	proj     *projections.Runner
	commands *events.Commands
	db       *bun.DB
	reqlogs  *events.ReqLogPublisher
	sqllog   *sqllog.Projector // request logs from GL_REQLOG into SQL
	lease    *events.Lease     // the election of the node that runs the duties; nil embedded
	tasks    *tasks.KV         // the cluster's task slot; nil embedded (the slot is in memory)
	proxy    *proxy.Handler
	limits   *limits.Limiter // the limits of named proxy keys
	metrics  *httpapi.Metrics
	valid    *proxy.Validator
	taskCtx  context.Context // background admin tasks stop when it ends
	stopTask context.CancelFunc
	http     *http.Server
	listener net.Listener
	lock     *dataDirLock
}

// run starts a node, serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, cfg Config, log zerolog.Logger) error {
	n, err := startNode(ctx, cfg, log)
	if err != nil {
		return err
	}
	return n.serve(ctx)
}

func logStartup(cfg Config, log zerolog.Logger) {
	for _, w := range cfg.Warnings {
		log.Warn().Msg(w)
	}
	log.Info().Object("config", cfg).Msg("configuration loaded")
}

// seedSettings are the settings in force on an empty log: the defaults, with app_url
// from HOST and PORT and the global proxy keys from AUTH_KEY, as gpt-load seeds them.
func seedSettings(cfg Config) domain.Settings {
	s := domain.DefaultSettings()
	host := cfg.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	s.AppURL = "http://" + net.JoinHostPort(host, fmt.Sprint(cfg.Port))
	s.ProxyKeys = cfg.AuthKey
	return s
}

func startNode(ctx context.Context, cfg Config, log zerolog.Logger) (_ *node, err error) {
	logStartup(cfg, log)
	if time.Local != cfg.Location { // nodes started together in one process (tests) share it
		time.Local = cfg.Location
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &node{cfg: cfg, log: log, lock: lock}
	spool, err := cleanSpool(cfg.DataDir)
	if err != nil {
		lock.release()
		return nil, err
	}
	defer func() {
		if err != nil {
			n.closeNATS(context.Background())
			if n.db != nil {
				n.db.Close()
			}
			n.lock.release()
		}
	}()
	cipher, err := events.NewCipher(cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	if n.nc, err = n.connectNATS(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(n.nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			log.Error().Err(err).Str("subject", m.Subject).Msg("an asynchronous publish failed")
		}))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	// A node started with its NATS cluster (docker compose up) waits for the cluster to
	// elect its JetStream leaders; each attempt is logged.
	natsCtx, cancelNATS := context.WithTimeout(ctx, clusterWait)
	defer cancelNATS()
	n.store, err = events.OpenStore(natsCtx, js, events.StoreConfig{
		Node: cfg.NodeName, Replicas: cfg.NATS.Replicas, Cipher: cipher,
		ReqLogMaxAge: cfg.ReqLog.MaxAge, ReqLogMaxBytes: cfg.ReqLog.MaxBytes,
	}, log.With().Str("component", "events").Logger())
	if err != nil {
		return nil, err
	}
	if err := checkDataKey(natsCtx, js, n.store); err != nil {
		return nil, err
	}
	// The admin key file is read after the log: a wrong ENCRYPTION_KEY is reported on the
	// data first, with what to do about it.
	if cfg.AuthKeyFromDataDir {
		key, created, err := adminKey(cfg.DataDir, cipher)
		if err != nil {
			if errors.Is(err, events.ErrDecrypt) || errors.Is(err, errSealedNoKey) {
				return nil, fmt.Errorf("%w.\n%s", err, keyAdvice(cipher))
			}
			return nil, err
		}
		cfg.AuthKey, n.cfg.AuthKey = key, key
		if created {
			announceAdminKey(os.Stderr, key, filepath.Join(cfg.DataDir, adminKeyFileName), cipher.Enabled())
		}
	}
	usage, err := limits.OpenUsageBucket(natsCtx, js, cfg.NATS.Replicas, log.With().Str("component", "limits").Logger())
	if err != nil {
		return nil, err
	}
	n.limits = limits.New(limits.Config{
		Node: cfg.NodeName, Conn: n.nc, KV: usage, Interval: cfg.Limits.Interval, Now: cfg.Limits.Now,
		Log: log.With().Str("component", "limits").Logger(),
	})
	if !cfg.UsesEmbeddedNATS() {
		n.lease, err = events.OpenLease(natsCtx, js, events.LeaseConfig{
			Node: cfg.NodeName, Replicas: cfg.NATS.Replicas, TTL: cfg.LeaderLease, Candidate: !cfg.IsSlave,
		}, log.With().Str("component", "leader").Logger())
		if err != nil {
			return nil, err
		}
		n.tasks, err = tasks.OpenKV(natsCtx, js, tasks.KVConfig{
			Node: cfg.NodeName, Replicas: cfg.NATS.Replicas, Lease: cfg.LeaderLease,
		}, log.With().Str("component", "tasks").Logger())
		if err != nil {
			return nil, err
		}
	}
	// The SQL store of request logs: opened and migrated now, so a wrong DATABASE_DSN
	// stops the node at start rather than when the first log arrives.
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n.db, err = sqlstore.Open(openCtx, cfg.DatabaseDSN, log.With().Str("component", "sql").Logger())
	if err != nil {
		return nil, err
	}
	if err := sqlstore.Migrate(openCtx, n.db); err != nil {
		return nil, fmt.Errorf("migrate %s database: %w", sqlstore.DialectOf(cfg.DatabaseDSN), err)
	}
	// Every node runs the projector; they share its durable consumer, so each log is
	// written once.
	n.sqllog = sqllog.New(js, sqllog.NewWriter(n.db), n.db, sqllog.Config{},
		log.With().Str("component", "sqllog").Logger())
	snaps := events.NewSnapshots(filepath.Join(cfg.DataDir, "snapshots"), cipher)
	n.proj = projections.New(n.store, snaps, projections.Config{Seed: seedSettings(cfg)},
		log.With().Str("component", "projections").Logger())
	n.commands = events.NewCommands(n.store, n.proj)

	n.reqlogs = events.NewReqLogPublisher(js, events.ReqLogConfig{Node: cfg.NodeName, Cipher: cipher},
		log.With().Str("component", "reqlog").Logger())
	n.metrics = httpapi.NewMetrics()
	n.metrics.WatchPublisher(n.reqlogs)
	n.proxy, err = proxy.New(proxy.Config{
		Now:                   cfg.Limits.Now,
		MaxConcurrentRequests: cfg.MaxConcurrentRequests,
		RetryEmptyAnswer:      func(g *projections.GroupView) bool { return g.Effective.RetryEmptyResponse },
	}, proxy.Deps{
		Views: n.proj, Facts: n.store, Logs: n.metrics.Recorder(n.reqlogs), Limits: n.limits,
		Log: log.With().Str("component", "proxy").Logger(),
	})
	if err != nil {
		return nil, err
	}
	n.metrics.WatchStore(n.store)
	n.metrics.WatchDroppedFacts(n.proxy.DroppedFacts)
	n.metrics.WatchAffinity(func() (uint64, uint64, uint64) {
		st := n.proxy.AffinityStats()
		return st.Hits, st.Moved, st.Misses
	})
	n.metrics.WatchWaitingFacts(n.proxy.WaitingFacts)
	n.valid = n.proxy.Validator(proxy.ValidatorDeps{
		State: n.proj, Marker: n.commands, Log: log.With().Str("component", "validation").Logger(),
	})
	n.taskCtx, n.stopTask = context.WithCancel(context.Background())

	n.listener, err = net.Listen("tcp", cfg.ListenAddr())
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.ListenAddr(), err)
	}
	n.http = &http.Server{
		Handler: httpapi.New(httpapi.Deps{
			Log: log.With().Str("component", "http").Logger(), Ready: n.proj,
			Node: cfg.NodeName, Started: time.Now(),
			Commands: n.commands, State: n.proj, Audit: events.NewAudit(n.store), Cipher: cipher,
			AuthKey: cfg.AuthKey, EncryptionKeySet: cfg.EncryptionKey != "",
			Validator:   keyValidator{v: n.valid, proj: n.proj, cmd: n.commands, cipher: cipher},
			TaskContext: n.taskCtx, Tasks: n.taskStore(), Proxy: n.proxy, SpoolDir: spool,
			CORS: httpapi.CORS{
				Enabled: cfg.CORS.Enabled, AllowedOrigins: cfg.CORS.AllowedOrigins, AllowedMethods: cfg.CORS.AllowedMethods,
				AllowedHeaders: cfg.CORS.AllowedHeaders, AllowCredentials: cfg.CORS.AllowCredentials,
			},
			MaxRequests: cfg.MaxConcurrentRequests, Stream: n.store, Conn: n.nc,
			Logs:    sqllog.NewQueries(n.db),
			Metrics: n.metrics, MetricsPublic: cfg.MetricsPublic,
			Health:        httpapi.HealthConfig{RequestLogs: n.sqllog, Leader: n.leadership(), Database: n.db},
			ProxyKeyUsage: n.limits,
			SPA:           frontend.Dist(),
		}),
		ErrorLog:          serverErrorLog(log.With().Str("component", "http").Logger()),
		ReadTimeout:       cfg.ReadTimeout,
		ReadHeaderTimeout: min(cfg.ReadTimeout, 30*time.Second),
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
	}
	return n, nil
}

func (n *node) connectNATS() (*nats.Conn, error) {
	if n.cfg.UsesEmbeddedNATS() {
		srv, err := embedded.Start(embedded.Config{
			Name: n.cfg.NodeName, DataDir: n.cfg.DataDir, Listen: n.cfg.NATS.Listen,
			SyncInterval: n.cfg.NATS.Sync, SyncAlways: n.cfg.NATS.SyncAlways,
		}, n.log.With().Str("component", "nats").Logger())
		if err != nil {
			return nil, err
		}
		n.nats = srv
		if url := srv.ClientURL(); url != "" {
			n.log.Info().Str("url", url).Msg("embedded NATS also listens on TCP")
		}
		return srv.Connect()
	}
	opts := []nats.Option{nats.Name("gpt-load " + n.cfg.NodeName), nats.MaxReconnects(-1)}
	c := n.cfg.NATS
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLSCA != "" || c.TLSCert != "" {
		tc, err := tlsConfig(c)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(strings.Join(c.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

func tlsConfig(c NATSConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("NATS_TLS_CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("NATS_TLS_CA: no certificate found")
		}
		tc.RootCAs = pool
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("NATS_TLS_CERT/NATS_TLS_KEY: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// serve runs the projections, the background jobs and the HTTP server until ctx ends, then
// shuts down in reverse order: HTTP drains (in-flight requests finish), background tasks
// stop, the proxy hands its last facts and request logs to the log, the projections take
// their last snapshot, events are flushed and NATS drains.
func (n *node) serve(ctx context.Context) error {
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	g.Go(func() error { return n.proj.Run(gctx) })
	g.Go(func() error { return n.limits.Run(gctx) })
	// The SQL projector runs on its own context: it stops after the proxy has handed its
	// last request logs to the stream, finishing the batch it is writing.
	logCtx, stopLogs := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLogs()
	logsDone := make(chan error, 1)
	go func() { logsDone <- n.sqllog.Run(logCtx) }()
	g.Go(func() error {
		// Seed the settings once the log is read, so a restarted node never overwrites them.
		if !n.waitCaughtUp(gctx) {
			return nil
		}
		if err := n.commands.SeedSettings(gctx); err != nil && gctx.Err() == nil {
			return fmt.Errorf("seed settings: %w", err)
		}
		n.warnAdminKeyReuse()
		return nil
	})
	// The background duties run on one node: the elected leader of a cluster, or the
	// single embedded node. IS_SLAVE keeps a node out.
	if n.lease != nil || !n.cfg.IsSlave {
		g.Go(func() error {
			if !n.waitCaughtUp(gctx) {
				return nil
			}
			if n.lease == nil {
				n.runDuties(gctx)
				return nil
			}
			n.lease.Run(gctx, n.runDuties)
			return nil
		})
	}
	g.Go(func() error {
		n.log.Info().Str("addr", n.listener.Addr().String()).Str("node", n.cfg.NodeName).Msg("gpt-load listening")
		if err := n.http.Serve(n.listener); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})

	// Wait for a stop signal or a failure of any part.
	select {
	case <-ctx.Done():
		n.log.Info().Msg("shutting down")
	case <-gctx.Done():
	}
	drain, rest := shutdownBudget(n.cfg.ShutdownTimeout)
	httpCtx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := n.http.Shutdown(httpCtx); err != nil {
		n.log.Warn().Err(err).Msg("HTTP drain cut short; closing open connections")
		n.http.Close()
	}
	n.stopTask()
	if n.tasks != nil {
		n.tasks.Close()
	}
	// The proxy hands its last key-health facts and request logs to the log before the
	// projections stop and NATS drains.
	n.proxy.Close()
	closeCtx, cancel2 := context.WithTimeout(context.Background(), rest)
	defer cancel2()
	if lerr := n.reqlogs.Close(closeCtx); lerr != nil {
		n.log.Error().Err(lerr).Msg("request logs not flushed at shutdown")
	}
	// What is left in the stream is written by the next start (or another node).
	stopLogs()
	<-logsDone
	stopRun()
	err := g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if ferr := n.store.Flush(closeCtx); ferr != nil {
		n.log.Error().Err(ferr).Msg("events published at shutdown may be lost")
	}
	n.closeNATS(closeCtx)
	if cerr := n.db.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close database: %w", cerr)
	}
	n.lock.release()
	return err
}

// leadership tells who runs the background duties: the lease's holder in a cluster; a
// single embedded node leads unless it is IS_SLAVE.
func (n *node) leadership() leadership {
	if n.lease != nil {
		return n.lease
	}
	if n.cfg.IsSlave {
		return soleNode{}
	}
	return soleNode{name: n.cfg.NodeName}
}

type leadership interface {
	Leader() string
	Leading() bool
}

// soleNode is the leadership of a single embedded node: itself, or nobody.
type soleNode struct{ name string }

func (s soleNode) Leader() string { return s.name }
func (s soleNode) Leading() bool  { return s.name != "" }

// taskStore is the task slot for the admin API: the cluster's KV bucket, or nil (memory).
func (n *node) taskStore() tasks.Store {
	if n.tasks == nil {
		return nil
	}
	return n.tasks
}

// runDuties runs the background duties, key revalidation and request-log retention,
// until ctx ends (the node stops, or loses the leader lease).
func (n *node) runDuties(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := n.valid.RunRevalidation(ctx); err != nil && ctx.Err() == nil {
			n.log.Error().Err(err).Msg("key revalidation stopped")
		}
	})
	wg.Go(func() {
		days := func() int {
			if v := n.proj.View(); v != nil {
				return v.Settings.RequestLogRetentionDays
			}
			return 0
		}
		if err := sqllog.NewRetention(n.db, days, sqllog.RetentionConfig{},
			n.log.With().Str("component", "retention").Logger()).Run(ctx); err != nil && ctx.Err() == nil {
			n.log.Error().Err(err).Msg("request-log retention stopped")
		}
	})
	wg.Wait()
}

// waitCaughtUp waits until the projections have read the log; false if ctx ended first.
// warnAdminKeyReuse warns, once the state is read, of every proxy key that equals the
// admin key: whoever is given it to call the proxy may also run the admin API. gpt-load
// seeds the global proxy keys with AUTH_KEY, so a node left as seeded warns too.
func (n *node) warnAdminKeyReuse() {
	var where []string
	n.proj.Read(func(s *domain.State) {
		if slices.Contains(domain.SplitProxyKeys(s.Settings.ProxyKeys), n.cfg.AuthKey) {
			where = append(where, "the global proxy_keys setting")
		}
		for _, g := range s.Groups() {
			if slices.Contains(domain.SplitProxyKeys(g.ProxyKeys), n.cfg.AuthKey) {
				where = append(where, fmt.Sprintf("the proxy_keys of group %q", g.Name))
			}
		}
	})
	for _, w := range where {
		n.log.Warn().Msg("AUTH_KEY is also a proxy key in " + w + ": a client given it may run the admin API; give clients proxy keys of their own")
	}
}

func (n *node) waitCaughtUp(ctx context.Context) bool {
	for !n.proj.CaughtUp() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

func (n *node) closeNATS(ctx context.Context) {
	if n.nc != nil {
		if err := n.nc.Drain(); err != nil {
			n.nc.Close()
		}
		for n.nc.IsDraining() && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		n.nc.Close()
	}
	if n.nats != nil {
		if err := n.nats.Close(ctx); err != nil {
			n.log.Warn().Err(err).Msg("embedded NATS did not stop in time")
		}
	}
}
