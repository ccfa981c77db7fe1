package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/events"
	"gpt-load/projections"
	"gpt-load/projections/gptload"
	"gpt-load/projections/sqlstore"
)

const importUsage = `Usage: gpt-load import-gptload --dsn <gpt-load DATABASE_DSN> [--encryption-key <its ENCRYPTION_KEY>]
                             [--dry-run] [--overwrite] [--with-logs]

Brings a gpt-load 1.x database (SQLite file, MySQL or PostgreSQL, told apart by the DSN as
gpt-load does) into this node's event log: settings changed from gpt-load's defaults,
groups with every field and their ids, aggregate members, and every key with its id,
status, notes, failure count and times. The node's configuration (DATA_DIR or NATS_URL,
ENCRYPTION_KEY, DATABASE_DSN) comes from the environment and ./.env, as for a node; with
the embedded NATS, stop the node holding DATA_DIR first.

  --dsn             gpt-load's DATABASE_DSN (required)
  --encryption-key  the ENCRYPTION_KEY gpt-load ran with, if it had one
  --dry-run         show what would be imported; write nothing
  --overwrite       replace groups whose names exist here (else they are left alone)
  --with-logs       also bring request logs, hourly stats and key usage into DATABASE_DSN`

// importGptload runs the import-gptload command and returns the exit code.
func importGptload(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import-gptload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		dsn, key                    string
		dryRun, overwrite, withLogs bool
	)
	fs.StringVar(&dsn, "dsn", "", "")
	fs.StringVar(&key, "encryption-key", "", "")
	fs.BoolVar(&dryRun, "dry-run", false, "")
	fs.BoolVar(&overwrite, "overwrite", false, "")
	fs.BoolVar(&withLogs, "with-logs", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, importUsage)
			return 0
		}
		fmt.Fprintf(stderr, "gpt-load import-gptload: %v\n\n%s\n", err, importUsage)
		return 2
	}
	if dsn == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gpt-load import-gptload: --dsn is required and nothing else may follow the flags\n\n%s\n", importUsage)
		return 2
	}
	cfg, err := LoadConfig(os.LookupEnv, ".env")
	if err != nil {
		fmt.Fprintf(stderr, "gpt-load import-gptload: invalid configuration, nothing was imported:\n%v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := gptload.Options{EncryptionKey: key, DryRun: dryRun, Overwrite: overwrite, WithLogs: withLogs}
	if err := runImport(ctx, cfg, dsn, opts, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "gpt-load import-gptload: %v\n", err)
		return 1
	}
	return 0
}

// runImport opens this node's event log as a node would (without serving anything),
// imports, and closes it, leaving a snapshot for the next start.
func runImport(ctx context.Context, cfg Config, dsn string, opts gptload.Options, stdout, stderr io.Writer) (err error) {
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, NoColor: true, TimeFormat: time.RFC3339}).
		Level(zerolog.WarnLevel).With().Timestamp().Logger()
	n := &node{cfg: cfg, log: log}
	if cfg.UsesEmbeddedNATS() {
		if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
			return fmt.Errorf("%w\nStop that node before importing (or import into a running cluster through NATS_URL); nothing was imported", err)
		}
		defer n.lock.release()
	}
	cipher, err := events.NewCipher(cfg.EncryptionKey)
	if err != nil {
		return err
	}
	if cfg.AuthKeyFromDataDir && !opts.DryRun {
		// The settings seeded below take the admin key as the first global proxy key, as
		// the node's first start would.
		k, created, err := adminKey(cfg.DataDir, cipher)
		if err != nil {
			return err
		}
		cfg.AuthKey = k
		if created {
			announceAdminKey(stderr, k, filepath.Join(cfg.DataDir, adminKeyFileName), cipher.Enabled())
		}
	}
	src, err := gptload.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer src.Close()

	if n.nc, err = n.connectNATS(); err != nil {
		return err
	}
	defer n.closeNATS(context.Background())
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	store, err := events.OpenStore(openCtx, js, events.StoreConfig{
		Node: cfg.NodeName, Replicas: cfg.NATS.Replicas, Cipher: cipher,
		ReqLogMaxAge: cfg.ReqLog.MaxAge, ReqLogMaxBytes: cfg.ReqLog.MaxBytes,
	}, log.With().Str("component", "events").Logger())
	if err != nil {
		return err
	}
	defer store.Flush(context.Background())
	snaps := events.NewSnapshots(filepath.Join(cfg.DataDir, "snapshots"), cipher)
	proj := projections.New(store, snaps, projections.Config{Seed: seedSettings(cfg)},
		log.With().Str("component", "projections").Logger())
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	runDone := make(chan error, 1)
	go func() { runDone <- proj.Run(runCtx) }()
	defer func() {
		stopRun() // the runner takes its last snapshot, so the next start replays little
		if rerr := <-runDone; rerr != nil && !errors.Is(rerr, context.Canceled) && err == nil {
			err = rerr
		}
	}()
	for !proj.CaughtUp() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rerr := <-runDone:
			runDone <- rerr
			return fmt.Errorf("read the event log: %w", rerr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cmds := events.NewCommands(store, proj)
	if !opts.DryRun {
		if err := cmds.SeedSettings(ctx); err != nil {
			return fmt.Errorf("seed settings: %w", err)
		}
	}
	t := gptload.Target{Commands: cmds, State: proj, Cipher: cipher, Actor: events.ActorAdmin}
	if opts.WithLogs {
		db, err := sqlstore.Open(openCtx, cfg.DatabaseDSN, log.With().Str("component", "sql").Logger())
		if err != nil {
			return err
		}
		defer db.Close()
		if err := sqlstore.Migrate(openCtx, db); err != nil {
			return fmt.Errorf("migrate %s database: %w", sqlstore.DialectOf(cfg.DatabaseDSN), err)
		}
		t.DB = db
	}
	im, err := gptload.Prepare(ctx, src, t, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Importing from gpt-load (%s): %d keys to bring\n", src, im.TotalKeys())
	start := time.Now()
	last := start
	sum, err := im.Run(ctx, func(done, total int) {
		if now := time.Now(); now.Sub(last) >= time.Second || done == total {
			last = now
			fmt.Fprintf(stdout, "  keys %d/%d (%.0f keys/s)\n", done, total, float64(done)/max(now.Sub(start).Seconds(), 1e-3))
		}
	})
	took := time.Since(start)
	sum.Write(stdout)
	if err != nil {
		return err
	}
	if n := sum.Keys.Imported(); n > 0 {
		fmt.Fprintf(stdout, "Done in %s (%.0f keys/s).\n", took.Round(time.Millisecond), float64(n)/max(took.Seconds(), 1e-3))
	} else {
		fmt.Fprintf(stdout, "Done in %s.\n", took.Round(time.Millisecond))
	}
	return nil
}
