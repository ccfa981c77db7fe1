package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/embedded"
	"gpt-load/httpapi"
	"gpt-load/projections"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
	"gpt-load/proxy"
	"gpt-load/proxy/limits"
)

// serveNode runs the core of a gpt-load node as shipped (embedded JetStream on disk,
// projections, key-health facts, request logs packed and published to the log stream) with
// one group "bench" of -keys keys in front of -upstream, proxy key sk-bench-proxy.
func serveNode(args []string) error {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	upstream := fs.String("upstream", "", "upstream base URL")
	dataDir := fs.String("data", "", "data directory")
	nkeys := fs.Int("keys", 100, "upstream keys")
	sqlDSN := fs.String("sql", "", "database the request logs are written to, as a node does (default: SQLite in -data; \"none\": logs stay in the stream)")
	named := fs.Bool("named", false, "also create a named proxy key with limits far above the load (RPM, TPM, daily and monthly tokens) and write its secret to -data/named-key")
	affinity := fs.Bool("affinity", false, "also a group \"bench-affinity\" of the same keys with prompt_cache_affinity on")
	fs.Parse(args)
	if *upstream == "" || *dataDir == "" {
		return errors.New("node needs -upstream and -data")
	}
	log := zerolog.New(os.Stderr).Level(zerolog.WarnLevel)
	srv, err := embedded.Start(embedded.Config{Name: "loadtest", DataDir: *dataDir, SyncInterval: time.Second}, log) // as a node does (NATS_SYNC)
	if err != nil {
		return err
	}
	defer srv.Close(context.Background())
	nc, err := srv.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			log.Error().Err(err).Str("subject", m.Subject).Msg("asynchronous publish failed")
		}))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	store, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "loadtest"}, log)
	if err != nil {
		return err
	}
	seed := domain.DefaultSettings()
	seed.ProxyKeys = "sk-bench-proxy"
	run := projections.New(store, events.NewSnapshots(filepath.Join(*dataDir, "snapshots"), nil), projections.Config{Seed: seed}, log)
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	runDone := make(chan error, 1)
	go func() { runDone <- run.Run(runCtx) }()
	for !run.CaughtUp() {
		time.Sleep(5 * time.Millisecond)
	}
	cmds := events.NewCommands(store, run)
	if err := cmds.SeedSettings(ctx); err != nil {
		return err
	}
	ups, _ := json.Marshal([]map[string]any{{"url": *upstream, "weight": 1}})
	// The idle pools match the baseline's, so neither pays for reconnecting at -concurrency.
	conf := map[string]any{"max_idle_conns": 256, "max_idle_conns_per_host": 256}
	keys := make([]string, *nkeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("sk-upstream-%06d", i)
	}
	groups := []string{"bench"}
	if *affinity {
		groups = append(groups, "bench-affinity")
	}
	for _, name := range groups {
		conf["prompt_cache_affinity"] = name == "bench-affinity"
		cfg, _ := json.Marshal(conf)
		ch, model := "openai", "gpt-bench"
		g, err := cmds.CreateGroup(ctx, events.ActorAdmin, domain.GroupInput{
			Name: &name, ChannelType: &ch, TestModel: &model, Upstreams: ups, Config: cfg,
		})
		if err != nil {
			return err
		}
		if _, err := cmds.AddKeys(ctx, events.ActorAdmin, g.ID, keys, nil); err != nil {
			return err
		}
	}
	projDone := make(chan struct{})
	var proj *sqllog.Projector
	if *sqlDSN != "none" {
		dsn := *sqlDSN
		if dsn == "" {
			dsn = filepath.Join(*dataDir, "gpt-load.db")
		}
		db, err := sqlstore.Open(ctx, dsn, log)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := sqlstore.Migrate(ctx, db); err != nil {
			return err
		}
		proj = sqllog.New(js, sqllog.NewWriter(db), db, sqllog.Config{}, log)
		go func() {
			defer close(projDone)
			if err := proj.Run(runCtx); err != nil {
				log.Error().Err(err).Msg("request-log projector stopped")
			}
		}()
	} else {
		close(projDone)
	}
	usage, err := limits.OpenUsageBucket(ctx, js, 1, log)
	if err != nil {
		return err
	}
	lim := limits.New(limits.Config{Node: "loadtest", Conn: nc, KV: usage, Log: log})
	go lim.Run(runCtx)
	if *named {
		high := int64(1) << 40
		n := "loadtest"
		_, secret, err := cmds.CreateProxyKey(ctx, events.ActorAdmin, domain.ProxyKeyInput{
			Name: &n, RPM: &high, TPM: &high, DailyTokens: &high, MonthlyTokens: &high,
		})
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(*dataDir, "named-key"), []byte(secret), 0o600); err != nil {
			return err
		}
	}
	logs := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "loadtest", Cipher: store.Cipher()}, log)
	h, err := proxy.New(proxy.Config{MaxConcurrentRequests: 1024}, proxy.Deps{Views: run, Facts: store, Logs: httpapi.NewMetrics().Recorder(logs), Limits: lim, Log: log})
	if err != nil {
		return err
	}
	serveErr := listenAndServe(h)
	h.Close()
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := logs.Close(fctx); err != nil {
		log.Error().Err(err).Msg("request logs not flushed")
	}
	st := logs.Stats()
	fmt.Fprintf(os.Stderr, "node: %d request logs published, %d dropped\n", st.Published, st.Dropped)
	if proj != nil {
		// What the projector had not written when the load stopped is the backlog it let
		// grow; it goes on writing for a while so that the count below is complete.
		for deadline := time.Now().Add(30 * time.Second); proj.Stats().Written < st.Published && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		fmt.Fprintf(os.Stderr, "node: %d request logs written to SQL\n", proj.Stats().Written)
	}
	store.Flush(fctx)
	stopRun()
	<-projDone
	<-runDone
	return serveErr
}
