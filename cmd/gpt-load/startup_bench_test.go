package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	total := 1_000_000
	if v := os.Getenv("BENCH_KEYS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	const groups = 100
	dir := b.TempDir()
	bin := filepath.Join(dir, "gpt-load")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
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
	env := map[string]string{"DATA_DIR": data, "HOST": "127.0.0.1", "PORT": strconv.Itoa(freePort(b)),
		"AUTH_KEY": "bench-admin-key-0123456789"}
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
		"AUTH_KEY=bench-admin-key-0123456789", "LOG_LEVEL=warn")
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
