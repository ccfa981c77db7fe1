package sqllog_test

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// logStream starts an embedded server with the streams created and returns its
// JetStream context.
func logStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	js := eventstest.RunServer(t, "").JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.OpenStore(ctx, js, events.StoreConfig{Node: "n1"}, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	return js
}

// publish sends recs as one request-log message, as the proxy's publisher packs them.
func publish(t testing.TB, js jetstream.JetStream, recs []domain.RequestLog) {
	t.Helper()
	msg := nats.NewMsg(events.ReqLogSubject)
	msg.Header.Set("Gl-Type", "reqlog.batch")
	msg.Header.Set("Gl-Schema", "1")
	msg.Header.Set("Gl-Count", fmt.Sprint(len(recs)))
	for i := range recs {
		msg.Data = append(events.AppendRequestLog(msg.Data, &recs[i]), '\n')
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// startProjector runs a projector until the test ends or stop is called; stop waits for
// Run to return.
func startProjector(t testing.TB, js jetstream.JetStream, db *bun.DB, cfg sqllog.Config, hook func(*sqllog.Projector)) (p *sqllog.Projector, stop func()) {
	t.Helper()
	if cfg.BacklogEvery == 0 {
		cfg.BacklogEvery = 100 * time.Millisecond
	}
	p = sqllog.New(js, sqllog.NewWriter(db), db, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if hook != nil {
		hook(p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

func waitRows(t testing.TB, db *bun.DB, want int64, within time.Duration) {
	t.Helper()
	eventstest.CheckFor(t, within, 20*time.Millisecond, func() error {
		if n := sqlstoretest.Count(t, db, "request_logs"); n != want {
			return fmt.Errorf("request_logs holds %d rows, want %d", n, want)
		}
		return nil
	})
}

func TestProjector(t *testing.T) {
	sqlstoretest.EachDB(t, func(t *testing.T, dsn string, _ *bun.DB) {
		t.Run("a log reaches SQL within 2 s", func(t *testing.T) {
			js, db := logStream(t), sqlstoretest.Migrated(t, sqlstoretest.DSN(t, dialectName(dsn)))
			startProjector(t, js, db, sqllog.Config{}, nil)
			pub := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1"}, zerolog.Nop())
			defer pub.Close(context.Background())
			rec := unkeyed([]domain.RequestLog{genLog(2)})[0]
			start := time.Now()
			pub.Record(&rec)
			waitRows(t, db, 1, 2*time.Second)
			t.Logf("record to row: %s", time.Since(start))
			checkAggregates(t, db, expect([]domain.RequestLog{rec}))
		})

		t.Run("a projector killed between commit and ack leaves every log once", func(t *testing.T) {
			js, db := logStream(t), sqlstoretest.Migrated(t, sqlstoretest.DSN(t, dialectName(dsn)))
			all := genLogs(0, 2000)
			for i := 0; i < len(all); i += 100 {
				publish(t, js, all[i:i+100])
			}
			var batches atomic.Int32
			crashed := make(chan struct{})
			cfg := sqllog.Config{MaxMessages: 4, AckWait: time.Second}
			_, stop := startProjector(t, js, db, cfg, func(p *sqllog.Projector) {
				sqllog.SetAfterWrite(p, func() bool {
					if batches.Add(1) == 2 {
						close(crashed)
						return false
					}
					return batches.Load() < 2
				})
			})
			<-crashed
			stop()
			if n := sqlstoretest.Count(t, db, "request_logs"); n == 0 || n == int64(len(all)) {
				t.Fatalf("%d rows after the crash; want some but not all", n)
			}
			// A new projector: the unacknowledged messages come again after AckWait, and
			// the batch written before the crash is not counted twice.
			p2, _ := startProjector(t, js, db, cfg, nil)
			waitRows(t, db, int64(len(all)), 20*time.Second)
			checkAggregates(t, db, expect(all))
			eventstest.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
				if b := p2.Backlog(); b.Messages != 0 || b.MeasuredAt.IsZero() {
					return fmt.Errorf("backlog %+v, want 0 messages", b)
				}
				return nil
			})
		})

		t.Run("poison messages are parked and the logs behind them written", func(t *testing.T) {
			js, db := logStream(t), sqlstoretest.Migrated(t, sqlstoretest.DSN(t, dialectName(dsn)))
			refuse(t, db, "poison")
			// Undecodable: a type this version does not know.
			bad := nats.NewMsg(events.ReqLogSubject)
			bad.Header.Set("Gl-Type", "reqlog.batch")
			bad.Header.Set("Gl-Schema", "1")
			bad.Header.Set("Gl-Count", "3")
			bad.Data = []byte("{not json\n")
			if _, err := js.PublishMsg(t.Context(), bad); err != nil {
				t.Fatal(err)
			}
			// A message with one record the database refuses, between good ones.
			withPoison := genLogs(0, 10)
			withPoison[4].ID = "poison"
			publish(t, js, withPoison)
			publish(t, js, genLogs(100, 200))
			p, _ := startProjector(t, js, db, sqllog.Config{MaxDeliver: 2}, nil)
			want := append(genLogs(0, 4), genLogs(5, 10)...)
			want = append(want, genLogs(100, 200)...)
			waitRows(t, db, int64(len(want)), 20*time.Second)
			checkAggregates(t, db, expect(want))
			eventstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if b := p.Backlog(); b.ParkedMsgs != 2 || b.ParkedRecords != 4 || b.Messages != 0 {
					return fmt.Errorf("backlog %+v, want 2 parked messages with 4 records, nothing pending", b)
				}
				return nil
			})
			// Parked messages stay in the stream.
			st, err := js.Stream(t.Context(), events.ReqLogStream)
			if err != nil {
				t.Fatal(err)
			}
			if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != 3 {
				t.Errorf("the stream holds %v messages (%v), want all 3", info.State.Msgs, err)
			}
		})
	})
}

func dialectName(dsn string) string {
	switch d := string(sqlstore.DialectOf(dsn)); d {
	case "postgres", "mysql":
		return d
	}
	return "sqlite"
}

// refuse makes db refuse request logs with the given id, as a database refuses a row it
// cannot take.
func refuse(t *testing.T, db *bun.DB, id string) {
	t.Helper()
	var stmts []string
	switch db.Dialect().Name() {
	case dialect.SQLite:
		stmts = []string{`CREATE TRIGGER refuse_log BEFORE INSERT ON request_logs WHEN NEW.id = '` + id +
			`' BEGIN SELECT RAISE(ABORT, 'refused'); END`}
	case dialect.PG:
		stmts = []string{
			`CREATE FUNCTION refuse_log() RETURNS trigger AS $$ BEGIN IF NEW.id = '` + id +
				`' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`,
			`CREATE TRIGGER refuse_log BEFORE INSERT ON request_logs FOR EACH ROW EXECUTE FUNCTION refuse_log()`,
		}
	case dialect.MySQL:
		stmts = []string{`CREATE TRIGGER refuse_log BEFORE INSERT ON request_logs FOR EACH ROW BEGIN IF NEW.id = '` + id +
			`' THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF; END`}
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("install the refusing trigger: %v", err)
		}
	}
}

// TestProjectorSurvivesSQLOutage cuts the connection between the projector and
// PostgreSQL with a TCP proxy, publishes logs meanwhile, and restores it: every log lands.
func TestProjectorSurvivesSQLOutage(t *testing.T) {
	t.Parallel()
	dsn := sqlstoretest.DSN(t, "postgres")
	direct := sqlstoretest.Migrated(t, dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cut := sqlstoretest.NewCutProxy(t, u.Host)
	u.Host = cut.Addr
	viaProxy := sqlstoretest.Open(t, u.String())

	js := logStream(t)
	p, _ := startProjector(t, js, viaProxy, sqllog.Config{}, nil)
	pub := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1"}, zerolog.Nop())
	defer pub.Close(context.Background())
	all := unkeyed(genLogs(0, 1000))
	for i := range all[:100] {
		pub.Record(&all[i])
	}
	waitRows(t, direct, 100, 5*time.Second)

	cut.Cut()
	for i := range all[100:] {
		pub.Record(&all[100+i])
	}
	// The proxy's publisher is not held back: the stream takes the logs.
	eventstest.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if s := pub.Stats(); s.Published != uint64(len(all)) {
			return fmt.Errorf("published %d of %d", s.Published, len(all))
		}
		return nil
	})
	eventstest.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if b := p.Backlog(); !b.SQLDown || b.Messages == 0 {
			return fmt.Errorf("backlog %+v: want SQL down and messages waiting", b)
		}
		return nil
	})
	if n := sqlstoretest.Count(t, direct, "request_logs"); n != 100 {
		t.Fatalf("%d rows while the database is cut off, want 100", n)
	}

	cut.Restore()
	waitRows(t, direct, int64(len(all)), 30*time.Second)
	checkAggregates(t, direct, expect(all))
	if b := p.Backlog(); b.ParkedMsgs != 0 {
		t.Errorf("%d messages parked during the outage, want 0", b.ParkedMsgs)
	}
}

// unkeyed drops the key values of recs, keeping their hashes: the publisher would
// otherwise hash the values itself.
func unkeyed(recs []domain.RequestLog) []domain.RequestLog {
	for i := range recs {
		recs[i].KeyValue = ""
	}
	return recs
}
