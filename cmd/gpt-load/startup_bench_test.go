package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"gpt-load/events"
)

// BenchmarkStartup measures the real binary starting on a data directory that holds
// 1,000,000 keys in 100 groups (set BENCH_KEYS for another count): the time from exec to
// a healthy /health, the events replayed per second, and the resident memory once healthy,
// with the snapshot and without it (full replay).
//
//	go test -run '^$' -bench Startup -benchtime 1x ./cmd/gpt-load
func BenchmarkStartup(b *testing.B) {
	const groups = 100
	dir, bin, total := benchSetup(b)
	data := filepath.Join(dir, "data")
	prepStart := time.Now()
	seq := fillDataDir(b, data, groups, total/groups)
	b.Logf("prepared %d keys in %d groups (%d events) in %v", total, groups, seq, time.Since(prepStart).Round(time.Millisecond))
	snap := filepath.Join(data, "snapshots", "state.snap")
	saved := snap + ".saved"
	if err := os.Rename(snap, saved); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"snapshot", "full-replay"} {
		b.Run(mode, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				os.Remove(snap)
				if mode == "snapshot" {
					copyFileB(b, saved, snap)
				}
				took, rss := startAndMeasure(b, bin, data)
				b.ReportMetric(took.Seconds(), "s-to-healthy")
				b.ReportMetric(float64(rss)/(1<<20), "MB-RSS")
				if mode == "full-replay" {
					b.ReportMetric(float64(seq)/took.Seconds(), "events/s")
					b.ReportMetric(float64(total)/took.Seconds(), "keys/s")
				}
			}
		})
	}
}

// fillDataDir writes groups×perGroup random keys through the command path into a node's
// data directory and stops the node cleanly (so a snapshot is written). It returns the
// last event sequence.
func fillDataDir(b *testing.B, data string, groups, perGroup int) uint64 {
	b.Helper()
	return fillDataDirWith(b, data, groups, perGroup, nil)
}

// fillDataDirWith is fillDataDir with more of the node's environment (ENCRYPTION_KEY).
func fillDataDirWith(b *testing.B, data string, groups, perGroup int, extra map[string]string) uint64 {
	b.Helper()
	env := map[string]string{"DATA_DIR": data, "HOST": "127.0.0.1", "PORT": strconv.Itoa(freePort(b)),
		"AUTH_KEY": benchAdminKey}
	for k, v := range extra {
		env[k] = v
	}
	cfg, err := LoadConfig(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	n, err := startNode(ctx, cfg, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	n.listener.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.proj.Run(runCtx) }()
	for !n.proj.CaughtUp() {
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 24)
	for g := 0; g < groups; g++ {
		name := fmt.Sprintf("bench-%03d", g)
		grp, err := n.commands.CreateGroup(ctx, events.ActorAdmin, benchGroup(name))
		if err != nil {
			b.Fatal(err)
		}
		keys := make([]string, perGroup)
		for i := range keys {
			rand.Read(buf)
			keys[i] = "sk-" + hex.EncodeToString(buf)
		}
		if _, err := n.commands.AddKeys(ctx, events.ActorAdmin, grp.ID, keys, nil); err != nil {
			b.Fatal(err)
		}
	}
	seq := n.proj.Applied()
	stop()
	<-done
	n.closeNATS(ctx)
	return seq
}

func startAndMeasure(b *testing.B, bin, data string) (time.Duration, int64) {
	b.Helper()
	port := freePort(b)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DATA_DIR="+data, "HOST=127.0.0.1", "PORT="+strconv.Itoa(port),
		"AUTH_KEY="+benchAdminKey, "LOG_LEVEL=warn")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	for time.Since(start) < 5*time.Minute {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(start), rssOf(b, cmd.Process.Pid)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatal("node did not become healthy")
	return 0, 0
}

func rssOf(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func copyFileB(b *testing.B, from, to string) {
	raw, err := os.ReadFile(from)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o600); err != nil {
		b.Fatal(err)
	}
}

func freePort(b testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// BenchmarkLiveImport measures the resident memory of the real binary that received its
// keys while running: 1,000,000 keys (BENCH_KEYS) in 100 groups through
// POST /api/keys/add-async, one task after the other, as a user imports them. It reports
// the RSS when the last task has finished and once the node has settled (40 s later),
// to set beside BenchmarkStartup's RSS after a restart on the same amount of data.
//
//	go test -run '^$' -bench LiveImport -benchtime 1x ./cmd/gpt-load
func BenchmarkLiveImport(b *testing.B) {
	const groups = 100
	dir, bin, total := benchSetup(b)
	for i := 0; i < b.N; i++ {
		data := filepath.Join(dir, fmt.Sprint("data-", i))
		port := freePort(b)
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "DATA_DIR="+data, "HOST=127.0.0.1", "PORT="+strconv.Itoa(port),
			"AUTH_KEY="+benchAdminKey, "LOG_LEVEL=warn")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		waitHealthyB(b, base)
		start := time.Now()
		buf := make([]byte, 24)
		for g := 0; g < groups; g++ {
			var grp struct {
				ID uint64 `json:"id"`
			}
			benchAPI(b, base, http.MethodPost, "/api/groups", fmt.Sprintf(
				`{"name":"live-%03d","channel_type":"openai","test_model":"m","upstreams":[{"url":"http://127.0.0.1:9","weight":1}]}`, g), &grp)
			var text strings.Builder
			for range total / groups {
				rand.Read(buf)
				text.WriteString("sk-" + hex.EncodeToString(buf) + "\n")
			}
			body, _ := json.Marshal(map[string]any{"group_id": grp.ID, "keys_text": text.String()})
			benchAPI(b, base, http.MethodPost, "/api/keys/add-async", string(body), nil)
			for {
				var st struct {
					Running bool   `json:"is_running"`
					Error   string `json:"error"`
				}
				benchAPI(b, base, http.MethodGet, "/api/tasks/status", "", &st)
				if st.Error != "" {
					b.Fatalf("import: %s", st.Error)
				}
				if !st.Running {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		took := time.Since(start)
		b.ReportMetric(float64(total)/took.Seconds(), "keys/s")
		b.ReportMetric(float64(rssOf(b, cmd.Process.Pid))/(1<<20), "MB-RSS-at-end")
		time.Sleep(40 * time.Second)
		b.ReportMetric(float64(rssOf(b, cmd.Process.Pid))/(1<<20), "MB-RSS-settled")
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}

const benchAdminKey = "bench-admin-key-0123456789"

func waitHealthyB(b *testing.B, base string) {
	b.Helper()
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(10 * time.Millisecond) {
		if resp, err := http.Get(base + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	b.Fatal("node did not become healthy")
}

// benchAPI calls the admin API and decodes the envelope's data into out (when not nil).
func benchAPI(b *testing.B, base, method, path, body string, out any) {
	b.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+benchAdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		var env struct {
			Data json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(raw, &env); err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(env.Data, out); err != nil {
			b.Fatal(err)
		}
	}
}

// benchSetup builds the binary into a temporary directory and reads the key count of a
// benchmark (BENCH_KEYS, default 1,000,000).
func benchSetup(b *testing.B) (dir, bin string, total int) {
	total = 1_000_000
	if v := os.Getenv("BENCH_KEYS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	dir = b.TempDir()
	bin = filepath.Join(dir, "gpt-load")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return dir, bin, total
}
