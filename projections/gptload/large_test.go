package gptload_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/projections/gptload"
)

// generate writes a gpt-load 1.x SQLite database (its own schema) with keys spread over
// groups in interleaved blocks of block keys, as repeated imports leave them: ids run
// 1..keys, every tenth key invalid with 3 failures, every hundredth with a note.
func generate(t testing.TB, groups, keys, block int) string {
	t.Helper()
	schema, err := os.ReadFile(filepath.Join("testdata", "gpt-load-1x", "schema-sqlite.sql"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "large.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range strings.Split(string(schema), ";\n") {
		if strings.TrimSpace(stmt) != "" {
			if _, err := db.Exec(stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
	now := "2026-11-25 21:20:49.305156836+00:00"
	for g := 1; g <= groups; g++ {
		if _, err := db.Exec(`INSERT INTO groups (id, name, display_name, description, group_type, upstreams, validation_endpoint, channel_type, sort, test_model, param_overrides, config, header_rules, model_redirect_rules, model_redirect_strict, created_at, updated_at)
			VALUES (?, ?, ?, '', 'standard', '[{"url":"https://api.openai.com","weight":1}]', '', 'openai', ?, 'gpt-4o-mini', 'null', 'null', '[]', '{}', 0, ?, ?)`,
			g, fmt.Sprintf("g%02d", g), fmt.Sprintf("Group %d", g), g, now, now); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	ins, err := tx.Prepare(`INSERT INTO api_keys (id, key_value, key_hash, group_id, status, notes, request_count, failure_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= keys; i++ {
		v := fmt.Sprintf("sk-generated-%07d-%s", i, strings.Repeat("x", 24))
		sum := sha256.Sum256([]byte(v))
		status, fails, note := "active", 0, ""
		if i%10 == 0 {
			status, fails = "invalid", 3
		}
		if i%100 == 1 {
			note = fmt.Sprintf("note %d", i)
		}
		g := ((i-1)/block)%groups + 1
		if _, err := ins.Exec(i, v, hex.EncodeToString(sum[:]), g, status, note, fails, now, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestImportGenerated imports 100,000 keys over 20 groups, their ids interleaved between
// the groups, and checks every id, status, failure count and note.
func TestImportGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 keys: skipped with -short")
	}
	t.Parallel()
	const groups, keys, block = 20, 100_000, 500
	src := generate(t, groups, keys, block)
	n := startNode(t, "", nil)
	start := time.Now()
	sum := mustRun(t, n, src, gptload.Options{})
	t.Logf("imported %d keys in %v (%.0f keys/s; race detector and other tests slow this down)", sum.Keys.Imported(), time.Since(start), float64(sum.Keys.Imported())/time.Since(start).Seconds())
	if sum.Keys.Active != keys-keys/10 || sum.Keys.Invalid != keys/10 || sum.Keys.Renumbered != 0 {
		t.Fatalf("summary %+v", sum.Keys)
	}
	n.proj.Read(func(s *domain.State) {
		for i := 1; i <= keys; i++ {
			k, ok := s.Key(uint64(i))
			g := uint64(((i-1)/block)%groups + 1)
			if !ok || k.GroupID != g || k.Value != fmt.Sprintf("sk-generated-%07d-%s", i, strings.Repeat("x", 24)) {
				t.Fatalf("key %d: %+v, %v (want group %d)", i, k, ok, g)
			}
			if (k.Status == domain.KeyInvalid) != (i%10 == 0) || (i%10 == 0) != (k.FailureCount == 3) || (i%100 == 1) != (k.Notes != "") {
				t.Fatalf("key %d: %+v", i, k)
			}
		}
	})
	if _, err := n.cmd.AddKeys(context.Background(), "admin", 1, []string{"sk-after"}, nil); err != nil {
		t.Fatal(err)
	}
	n.proj.Read(func(s *domain.State) {
		if k, ok := s.Keys(1).ByHash(n.cipher.Hash("sk-after")); !ok || k.ID != keys+1 {
			t.Errorf("next key: %+v", k)
		}
	})
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkImport measures the import of 100,000 keys over 20 groups (BENCH_KEYS) from a
// gpt-load SQLite file, against our own import of the same keys (add-keys in the same
// run, the baseline): keys/s of each and their ratio.
func BenchmarkImport(b *testing.B) {
	const groups, block = 20, 500
	keys := 100_000
	if v := os.Getenv("BENCH_KEYS"); v != "" {
		fmt.Sscan(v, &keys)
	}
	src := generate(b, groups, keys, block)
	values := make([][]string, groups)
	for i := 1; i <= keys; i++ {
		g := ((i-1)/block)%groups + 1
		values[g-1] = append(values[g-1], fmt.Sprintf("sk-generated-%07d-%s", i, strings.Repeat("x", 24)))
	}
	var imp, base, impCPU, baseCPU time.Duration
	for b.Loop() {
		n := startNode(b, "", nil)
		start, cpu := time.Now(), cpuTime()
		mustRun(b, n, src, gptload.Options{})
		imp += time.Since(start)
		impCPU += cpuTime() - cpu

		m := startNode(b, "", nil)
		ctx := context.Background()
		for g := 1; g <= groups; g++ {
			if _, err := m.cmd.CreateGroup(ctx, "admin", domain.GroupInput{Name: ptr(fmt.Sprintf("g%02d", g)), ChannelType: ptr("openai"),
				TestModel: ptr("m"), Upstreams: []byte(`[{"url":"https://api.openai.com","weight":1}]`)}); err != nil {
				b.Fatal(err)
			}
		}
		start, cpu = time.Now(), cpuTime()
		for g := 1; g <= groups; g++ {
			if _, err := m.cmd.AddKeys(ctx, "admin", uint64(g), values[g-1], nil); err != nil {
				b.Fatal(err)
			}
		}
		base += time.Since(start)
		baseCPU += cpuTime() - cpu
	}
	// CPU time of the process (the embedded NATS server included) tells the cost apart
	// from the load of a shared machine.
	b.ReportMetric(impCPU.Seconds()/float64(b.N), "import-cpu-s")
	b.ReportMetric(baseCPU.Seconds()/float64(b.N), "addkeys-cpu-s")
	b.ReportMetric(float64(keys*b.N)/imp.Seconds(), "import-keys/s")
	b.ReportMetric(float64(keys*b.N)/base.Seconds(), "addkeys-keys/s")
	b.ReportMetric(imp.Seconds()/base.Seconds(), "import/addkeys")
}
