package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/uptrace/bun"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
)

const migrateUsage = `Usage: gpt-load migrate-keys [--from <current ENCRYPTION_KEY>] [--to <new ENCRYPTION_KEY>]

  --to NEW              encrypt data kept in clear (enable encryption)
  --from OLD            decrypt everything (disable encryption)
  --from OLD --to NEW   re-encrypt everything under another key

Every node must be stopped: the command takes DATA_DIR's lock and uses the same
configuration as a node (DATA_DIR or NATS_URL, DATABASE_DSN, from the environment and
./.env). It checks that every sealed value opens with --from before it changes anything,
then writes the whole state re-sealed as the first entry of a new event log, deletes the
old log, writes the pending request logs to SQL and empties their stream, re-seals the
request logs in SQL, the admin key file, and removes the snapshot. It can be run again
after an interruption with the same flags, and finishes the work. Then start the nodes
with ENCRYPTION_KEY set to NEW (or unset). See README, "Encryption at rest".`

// migrateKeys runs the migrate-keys command and returns the exit code.
func migrateKeys(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-keys", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var from, to string
	fs.StringVar(&from, "from", "", "")
	fs.StringVar(&to, "to", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, migrateUsage)
			return 0
		}
		fmt.Fprintf(stderr, "gpt-load migrate-keys: %v\n\n%s\n", err, migrateUsage)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case len(set) == 0 && fs.NArg() == 0:
		fmt.Fprintln(stdout, migrateUsage)
		return 0
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "gpt-load migrate-keys: nothing may follow the flags (got %q)\n\n%s\n", fs.Args(), migrateUsage)
		return 2
	case set["from"] && from == "":
		fmt.Fprintln(stderr, "gpt-load migrate-keys: --from is empty: give the ENCRYPTION_KEY the data is encrypted with")
		return 2
	case set["to"] && to == "":
		fmt.Fprintln(stderr, "gpt-load migrate-keys: --to is empty: give the new ENCRYPTION_KEY (to decrypt, leave --to out)")
		return 2
	case from != "" && from == to:
		fmt.Fprintln(stderr, "gpt-load migrate-keys: --from and --to are the same key: there is nothing to change")
		return 2
	}
	cfg, err := LoadConfig(os.LookupEnv, ".env")
	if err != nil {
		fmt.Fprintf(stderr, "gpt-load migrate-keys: invalid configuration, nothing was changed:\n%v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runMigrateKeys(ctx, cfg, from, to, stdout, stderr, nil); err != nil {
		fmt.Fprintf(stderr, "gpt-load migrate-keys: %v\n", err)
		return 1
	}
	return 0
}

// migrateStep names the points between the steps of a migration; a test can make the
// migration stop at any of them to check that a rerun finishes the work.
type migrateStep string

const (
	stepVerified migrateStep = "verified" // everything opens with --from; nothing changed yet
	stepStaged   migrateStep = "staged"   // the re-sealed state waits in the staging stream
	stepRetired  migrateStep = "retired"  // the old event log is deleted
	stepCopied   migrateStep = "copied"   // the new event log holds the rebase
	stepReqLog   migrateStep = "reqlog"   // the request-log stream is written to SQL and emptied
	stepSQL      migrateStep = "sql"      // request logs in SQL are re-sealed
	stepAdminKey migrateStep = "admin-key"
)

// runMigrateKeys migrates every secret at rest from the key from to the key to (either may
// be empty: clear). stopAt, when set, is called after each step and ends the migration
// there when it returns an error.
func runMigrateKeys(ctx context.Context, cfg Config, from, to string, out, errOut io.Writer, stopAt func(migrateStep) error) (err error) {
	start := time.Now()
	log := zerolog.New(zerolog.ConsoleWriter{Out: errOut, NoColor: true, TimeFormat: time.RFC3339}).
		Level(zerolog.WarnLevel).With().Timestamp().Logger()
	step := func(s migrateStep, format string, args ...any) error {
		fmt.Fprintf(out, "  %-9s %s (%s)\n", s, fmt.Sprintf(format, args...), time.Since(start).Round(time.Millisecond))
		if stopAt != nil {
			return stopAt(s)
		}
		return nil
	}
	fromC, err := events.NewCipher(from)
	if err != nil {
		return err
	}
	toC, err := events.NewCipher(to)
	if err != nil {
		return err
	}
	// The log is read with --from; to enable, with --to, so that data a node already
	// sealed with the new key (ENCRYPTION_KEY set before the migration) is read too.
	readC := fromC
	if from == "" {
		readC = toC
	}
	fmt.Fprintf(out, "gpt-load migrate-keys: %s → %s\n", describeKey(fromC), describeKey(toC))
	n := &node{cfg: cfg, log: log}
	if n.lock, err = lockDataDir(cfg.DataDir); err != nil {
		return fmt.Errorf("%w\nStop every node before migrating keys; nothing was changed", err)
	}
	defer n.lock.release()
	if n.nc, err = n.connectNATS(); err != nil {
		return err
	}
	defer n.closeNATS(context.Background())
	js, err := jetstream.New(n.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, clusterWait)
	defer cancel()
	if !cfg.UsesEmbeddedNATS() {
		// Other nodes hold their own DATA_DIR locks; a running cluster shows in its lease.
		holder, err := events.LeaseHolder(openCtx, js)
		if err != nil {
			return err
		}
		if holder != "" {
			return fmt.Errorf("node %q is running (it holds the leader lease): stop every node first (a node that died gives the lease up within LEADER_LEASE); nothing was changed", holder)
		}
	}
	storeCfg := func(c *events.Cipher) events.StoreConfig {
		return events.StoreConfig{Node: cfg.NodeName, Replicas: cfg.NATS.Replicas, Cipher: c,
			ReqLogMaxAge: cfg.ReqLog.MaxAge, ReqLogMaxBytes: cfg.ReqLog.MaxBytes}
	}
	evLog := log.With().Str("component", "events").Logger()
	db, err := sqlstore.Open(openCtx, cfg.DatabaseDSN, log.With().Str("component", "sql").Logger())
	if err != nil {
		return err
	}
	defer db.Close()
	if err := sqlstore.Migrate(openCtx, db); err != nil {
		return fmt.Errorf("migrate %s database: %w", sqlstore.DialectOf(cfg.DatabaseDSN), err)
	}

	staged, resume, err := events.StagedRebase(ctx, js)
	if err != nil {
		return err
	}
	if resume && (staged.KeyID != toC.KeyID() || staged.FromKeyID != readC.KeyID()) {
		return fmt.Errorf("an earlier migrate-keys from key id %q to key id %q was interrupted: run it again with the same --from and --to (these are %q and %q); nothing was changed",
			staged.FromKeyID, staged.KeyID, readC.KeyID(), toC.KeyID())
	}
	if resume {
		fmt.Fprintf(out, "  resuming the migration staged at %s (%d keys)\n", staged.TakenAt.Format(time.RFC3339), staged.Keys)
	} else {
		if staged, err = stageMigration(ctx, js, db, cfg, readC, toC, storeCfg, evLog, step); err != nil {
			return err
		}
	}

	done, err := events.RetireLog(ctx, js, staged)
	if err != nil {
		return err
	}
	toStore, err := events.OpenStore(openCtx, js, storeCfg(toC), evLog)
	if err != nil {
		return err
	}
	if !done {
		if err := step(stepRetired, "old event log deleted"); err != nil {
			return err
		}
		if err := toStore.CopyStagedRebase(ctx, staged); err != nil {
			return err
		}
	}
	if err := step(stepCopied, "new event log holds the re-sealed state: %d keys in %d chunks", staged.Keys, staged.Chunks); err != nil {
		return err
	}
	state, _, err := toStore.Fold(ctx, seedSettings(cfg))
	if err != nil {
		return fmt.Errorf("read the new event log back: %w", err)
	}

	// Request logs: what waits in the stream goes to SQL, then the stream is emptied.
	if err := drainRequestLogs(ctx, js, db, log); err != nil {
		return err
	}
	if err := purgeRequestLogs(ctx, js); err != nil {
		return err
	}
	if err := step(stepReqLog, "request-log stream written to SQL and emptied"); err != nil {
		return err
	}
	seen, changed, err := sqllog.Reseal(ctx, db, true, func(k sqllog.StoredKey) (sqllog.StoredKey, bool, error) {
		return resealStored(readC, toC, k)
	})
	if err != nil {
		return err
	}
	usage, err := sqllog.RehashUsage(ctx, db, rehashMap(state, readC, toC))
	if err != nil {
		return err
	}
	if err := sqlstore.Compact(ctx, db); err != nil {
		return err
	}
	if err := step(stepSQL, "request logs re-sealed in SQL: %d of %d; key usage rows re-hashed: %d", changed, seen, usage); err != nil {
		return err
	}
	if err := resealAdminKey(cfg.DataDir, readC, toC); err != nil {
		return err
	}
	if err := step(stepAdminKey, "admin key file re-sealed"); err != nil {
		return err
	}
	if err := removeSnapshots(cfg.DataDir); err != nil {
		return err
	}
	if err := events.DropStage(ctx, js); err != nil {
		return err
	}
	fmt.Fprintf(out, "Done in %s. Start the nodes with %s.\n", time.Since(start).Round(time.Millisecond), describeTarget(toC))
	return nil
}

// stageMigration checks that everything opens with the source key, folds the log and
// stages the state re-sealed under the target key.
func stageMigration(ctx context.Context, js jetstream.JetStream, db *bun.DB, cfg Config, readC, toC *events.Cipher,
	storeCfg func(*events.Cipher) events.StoreConfig, evLog zerolog.Logger, step func(migrateStep, string, ...any) error) (events.RebaseInfo, error) {
	fromStore, err := events.OpenStore(ctx, js, storeCfg(readC), evLog)
	if err != nil {
		return events.RebaseInfo{}, err
	}
	state, pos, err := fromStore.Fold(ctx, seedSettings(cfg))
	if err != nil {
		return events.RebaseInfo{}, fmt.Errorf("the event log does not open with --from, nothing was changed: %w", err)
	}
	if err := checkRequestLogStream(ctx, js, readC, toC); err != nil {
		return events.RebaseInfo{}, err
	}
	seen, _, err := sqllog.Reseal(ctx, db, false, func(k sqllog.StoredKey) (sqllog.StoredKey, bool, error) {
		_, _, err := openStored(readC, toC, k)
		return k, false, err
	})
	if err != nil {
		return events.RebaseInfo{}, fmt.Errorf("a request log in SQL does not open with --from, nothing was changed: %w", err)
	}
	if _, err := readAdminKey(cfg.DataDir, readC, toC); err != nil {
		return events.RebaseInfo{}, fmt.Errorf("nothing was changed: %w", err)
	}
	if err := step(stepVerified, "every sealed value opens: event log up to %d, %d request logs in SQL", pos.LastSeq, seen); err != nil {
		return events.RebaseInfo{}, err
	}
	if err := state.Rekey(toC.Hash); err != nil {
		return events.RebaseInfo{}, err
	}
	toStore, err := events.OpenStore(ctx, js, storeCfg(toC), evLog)
	if err != nil {
		return events.RebaseInfo{}, err
	}
	info, err := toStore.StageRebase(ctx, state, pos, readC.KeyID())
	if err != nil {
		return info, err
	}
	return info, step(stepStaged, "re-sealed state staged: %d keys, %d bytes", info.Keys, info.Bytes)
}

func describeKey(c *events.Cipher) string {
	if !c.Enabled() {
		return "clear"
	}
	return "key id " + c.KeyID()
}

func describeTarget(c *events.Cipher) string {
	if !c.Enabled() {
		return "ENCRYPTION_KEY unset"
	}
	return "ENCRYPTION_KEY set to the --to key (key id " + c.KeyID() + ")"
}

// openStored opens a key value stored in SQL by a node that ran with readC (or in clear,
// before encryption was enabled), or already re-sealed under toC by an interrupted run
// (done). A clear value is told from a sealed one by its hash: the SHA-256 of the value.
func openStored(readC, toC *events.Cipher, k sqllog.StoredKey) (plain string, done bool, err error) {
	if toC.Enabled() {
		if id, ok := events.SealedKeyID(k.Value); ok && id == toC.KeyID() {
			plain, err = toC.Decrypt(k.Value)
			return plain, k.Hash == toC.Hash(plain).String(), err
		}
	}
	plain, err = readC.Decrypt(k.Value)
	if err == nil && readC.Enabled() {
		return plain, false, nil
	}
	if _, ours := events.SealedKeyID(k.Value); !ours && k.Hash == sha256Hex(k.Value) {
		return k.Value, !toC.Enabled(), nil
	}
	if err == nil {
		err = errors.New("the value is neither sealed nor hashed as a clear one")
	}
	return "", false, err
}

func sha256Hex(v string) string {
	s := sha256.Sum256([]byte(v))
	return hex.EncodeToString(s[:])
}

// resealStored is the new stored form of a request log's key under toC.
func resealStored(readC, toC *events.Cipher, k sqllog.StoredKey) (sqllog.StoredKey, bool, error) {
	plain, done, err := openStored(readC, toC, k)
	if err != nil || done {
		return k, false, err
	}
	v, err := toC.Encrypt(plain)
	if err != nil {
		return k, false, err
	}
	return sqllog.StoredKey{Value: v, Hash: toC.Hash(plain).String()}, true, nil
}

// rehashMap maps the hashes a key may have had before the migration (under readC, or
// SHA-256 when it was added in clear) to its hash under toC.
func rehashMap(st *domain.State, readC, toC *events.Cipher) map[string]string {
	m := map[string]string{}
	for _, g := range st.Groups() {
		ks := st.Keys(g.ID)
		if ks == nil {
			continue
		}
		ks.Each(func(k *domain.Key) bool {
			to := toC.Hash(k.Value).String()
			m[readC.Hash(k.Value).String()] = to
			m[sha256Hex(k.Value)] = to
			return true
		})
	}
	return m
}

// checkRequestLogStream checks that every request-log message waiting in the stream opens
// with readC (or already with toC).
func checkRequestLogStream(ctx context.Context, js jetstream.JetStream, readC, toC *events.Cipher) error {
	st, err := js.Stream(ctx, events.ReqLogStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", events.ReqLogStream, err)
	}
	si, err := st.Info(ctx)
	if err != nil {
		return err
	}
	for seq := si.State.FirstSeq; si.State.Msgs > 0 && seq <= si.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read request-log message %d: %w", seq, err)
		}
		recs, _, err := events.DecodeRequestLogs(m.Header, m.Data)
		if err != nil {
			return fmt.Errorf("request-log message %d: %w", seq, err)
		}
		for _, r := range recs {
			if r.KeyValue == "" {
				continue
			}
			if _, _, err := openStored(readC, toC, sqllog.StoredKey{Value: r.KeyValue, Hash: r.KeyHash}); err != nil {
				return fmt.Errorf("request-log message %d does not open with --from, nothing was changed: %w", seq, err)
			}
		}
	}
	return nil
}

// drainRequestLogs runs the SQL projector until the request-log stream has nothing left
// to write.
func drainRequestLogs(ctx context.Context, js jetstream.JetStream, db *bun.DB, log zerolog.Logger) error {
	p := sqllog.New(js, sqllog.NewWriter(db), db, sqllog.Config{}, log.With().Str("component", "sqllog").Logger())
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() { cancel(); <-done }()
	for {
		if c, err := js.Consumer(ctx, events.ReqLogStream, sqllog.Durable); err == nil {
			if ci, err := c.Info(ctx); err == nil && ci.NumPending == 0 && ci.NumAckPending == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			done <- err
			return fmt.Errorf("writing the request-log stream to SQL stopped: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// purgeRequestLogs empties the request-log stream: everything in it is in SQL.
func purgeRequestLogs(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, events.ReqLogStream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", events.ReqLogStream, err)
	}
	if err := st.Purge(ctx); err != nil {
		return fmt.Errorf("purge %s: %w", events.ReqLogStream, err)
	}
	return nil
}

// readAdminKey opens the admin key file of dir with the source key, or the target key
// when an interrupted run re-sealed it already; "" when there is no file.
func readAdminKey(dir string, readC, toC *events.Cipher) (string, error) {
	path := filepath.Join(dir, adminKeyFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("admin key file: %w", err)
	}
	key, err := unsealAdminKey(path, string(b), readC)
	if err != nil {
		if k, terr := unsealAdminKey(path, string(b), toC); terr == nil {
			return k, nil
		}
	}
	return key, err
}

func resealAdminKey(dir string, readC, toC *events.Cipher) error {
	key, err := readAdminKey(dir, readC, toC)
	if err != nil || key == "" {
		return err
	}
	return writeAdminKey(filepath.Join(dir, adminKeyFileName), key, toC)
}

// removeSnapshots deletes the snapshot (sealed with the old key) and any temporary file a
// crash left beside it: the next start rebuilds it from the new log.
func removeSnapshots(dataDir string) error {
	dir := filepath.Join(dataDir, "snapshots")
	if err := events.NewSnapshots(dir, nil).Remove(); err != nil {
		return err
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, ".state.snap.*"))
	for _, t := range tmps {
		if err := os.Remove(t); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
	}
	return nil
}
