package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// binary builds the real gpt-load once for the tests of this package.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gpt-load-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "gpt-load")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// proc is a gpt-load process started by a test in its own working directory.
type proc struct {
	cmd    *exec.Cmd
	dir    string
	port   int
	out    *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startProc runs the binary in dir with only the given variables (plus PATH and HOME): no
// configuration beyond what the test names.
func startProc(t *testing.T, dir string, env ...string) *proc {
	t.Helper()
	p := &proc{dir: dir, out: &syncBuffer{}, exited: make(chan error, 1)}
	p.cmd = exec.Command(binary(t))
	p.cmd.Dir = dir
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PORT="); ok {
			p.port, _ = strconv.Atoi(v)
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("gpt-load output:\n%s", p.out.String())
		}
	})
	return p
}

func (p *proc) waitHealthy(t *testing.T) map[string]any {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", p.port))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				var h map[string]any
				if err := json.Unmarshal(body, &h); err != nil {
					t.Fatalf("health body %s: %v", body, err)
				}
				return h
			}
		}
		select {
		case err := <-p.exited:
			p.exited <- err // for the cleanup
			t.Fatalf("gpt-load exited before it was healthy: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("gpt-load not healthy within 30s")
	return nil
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t *testing.T, within time.Duration) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		p.exited <- err // for the cleanup
		if err == nil {
			return 0
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		t.Fatal(err)
	case <-time.After(within):
		t.Fatalf("gpt-load did not stop within %v of SIGTERM", within)
	}
	return -1
}

func TestStartsWithNoConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := freePort(t)
	p := startProc(t, dir, "PORT="+strconv.Itoa(port), "HOST=127.0.0.1")
	h := p.waitHealthy(t)
	if h["status"] != "healthy" || h["projections"].(map[string]any)["caught_up"] != true || h["uptime"] == "" {
		t.Fatalf("health = %v", h)
	}
	if !strings.Contains(p.out.String(), "AUTH_KEY is not set") {
		t.Error("no warning about the missing AUTH_KEY")
	}
	// Without AUTH_KEY a random admin key is generated, kept in DATA_DIR for the
	// restarts, and printed once.
	keyFile := filepath.Join(dir, "data", "admin.key")
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no generated admin key: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("admin key file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(keyFile)
	adminKey := strings.TrimSpace(string(raw))
	if len(adminKey) < 32 {
		t.Fatalf("generated admin key %q is too short", adminKey)
	}
	if !strings.Contains(p.out.String(), adminKey) {
		t.Error("the generated admin key was not printed")
	}
	if code := adminStatus(t, p.port, adminKey); code != http.StatusOK {
		t.Errorf("the generated admin key answers %d on the admin API", code)
	}
	if code := adminStatus(t, p.port, "sk-gpt-load-default-auth-key"); code != http.StatusUnauthorized {
		t.Errorf("the old well-known default key answers %d, want 401", code)
	}
	if got := runAdminKey(t, dir); got != adminKey {
		t.Errorf("gpt-load admin-key printed %q, want the generated key", got)
	}
	for _, want := range []string{"jetstream", "gpt-load.db"} {
		if _, err := os.Stat(filepath.Join(dir, "data", want)); err != nil {
			t.Errorf("no %s under ./data: %v", want, err)
		}
	}
	if n := listeningSockets(t, p.cmd.Process.Pid); n != 1 {
		t.Errorf("the process listens on %d TCP sockets, want 1 (HTTP only; embedded NATS is in-process)", n)
	}
	if code := p.stop(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "snapshots", "state.snap")); err != nil {
		t.Errorf("no snapshot written at shutdown: %v", err)
	}
	// A duration in the log says its unit (zerolog writes milliseconds).
	if !strings.Contains(p.out.String(), "took_ms=") {
		t.Errorf("no duration with its unit in the log:\n%s", p.out.String())
	}
	// The same directory starts again, from its snapshot.
	p2 := startProc(t, dir, "PORT="+strconv.Itoa(port), "HOST=127.0.0.1")
	p2.waitHealthy(t)
	if !strings.Contains(p2.out.String(), "state loaded from snapshot") {
		t.Error("the restart did not use the snapshot")
	}
	if strings.Contains(p2.out.String(), adminKey) {
		t.Error("the admin key was printed again on a restart")
	}
	if code := adminStatus(t, p2.port, adminKey); code != http.StatusOK {
		t.Errorf("after a restart the generated admin key answers %d", code)
	}
	if code := p2.stop(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after the second SIGTERM", code)
	}
}

// adminStatus is the status of an admin API call made with key.
func adminStatus(t *testing.T, port int, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/groups", port), nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// runAdminKey runs `gpt-load admin-key` in dir with the given variables and returns what
// it printed; it fails the test when the command fails.
func runAdminKey(t *testing.T, dir string, env ...string) string {
	t.Helper()
	cmd := exec.Command(binary(t), "admin-key")
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gpt-load admin-key: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// With ENCRYPTION_KEY set, the generated admin key rests sealed in DATA_DIR: readable
// again with the key, refused without it.
func TestGeneratedAdminKeyIsSealed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const enc = "ENCRYPTION_KEY=an-encryption-key-long-enough-42"
	env := []string{"HOST=127.0.0.1", "PORT=" + strconv.Itoa(freePort(t)), enc}
	p := startProc(t, dir, env...)
	p.waitHealthy(t)
	key := runAdminKey(t, dir, enc)
	if !strings.HasPrefix(key, "sk-admin-") || !strings.Contains(p.out.String(), key) {
		t.Fatalf("admin-key printed %q, not the key announced at start", key)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "data", "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), key) || !strings.HasPrefix(string(raw), "sealed:") {
		t.Fatalf("admin.key holds %q: not sealed", raw)
	}
	if code := adminStatus(t, p.port, key); code != http.StatusOK {
		t.Fatalf("the generated key answers %d", code)
	}
	cmd := exec.Command(binary(t), "admin-key")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "ENCRYPTION_KEY") {
		t.Fatalf("admin-key without ENCRYPTION_KEY: err %v, output %q", err, out)
	}
	if code := p.stop(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p2 := startProc(t, dir, env...)
	p2.waitHealthy(t)
	if code := adminStatus(t, p2.port, key); code != http.StatusOK {
		t.Fatalf("after a restart the key answers %d", code)
	}
}

// A second node on a DATA_DIR in use is refused with the holder's PID; once the first
// has stopped, the directory starts again.
func TestSecondNodeOnOneDataDirIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := []string{"HOST=127.0.0.1", "AUTH_KEY=" + e2eAdminKey, "DATA_DIR=" + filepath.Join(dir, "data")}
	first := startProc(t, dir, append(env, "PORT="+strconv.Itoa(freePort(t)))...)
	first.waitHealthy(t)

	second := startProc(t, dir, append(env, "PORT="+strconv.Itoa(freePort(t)))...)
	select {
	case err := <-second.exited:
		second.exited <- err
		if err == nil {
			t.Fatal("the second node exited with status 0")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the second node on the same DATA_DIR is still running")
	}
	want := fmt.Sprintf("in use by process %d", first.cmd.Process.Pid)
	if !strings.Contains(second.out.String(), want) {
		t.Errorf("the refusal does not say %q:\n%s", want, second.out.String())
	}
	if code := adminStatus(t, first.port, e2eAdminKey); code != http.StatusOK {
		t.Errorf("the first node answers %d after the refusal", code)
	}
	if code := first.stop(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	third := startProc(t, dir, append(env, "PORT="+strconv.Itoa(freePort(t)))...)
	third.waitHealthy(t)
}

func TestNATSListenOpensTCP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	natsPort := freePort(t)
	p := startProc(t, dir, "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1",
		"NATS_LISTEN=127.0.0.1:"+strconv.Itoa(natsPort), "AUTH_KEY=a-strong-admin-key-0123456789")
	p.waitHealthy(t)
	if n := listeningSockets(t, p.cmd.Process.Pid); n != 2 {
		t.Fatalf("the process listens on %d TCP sockets, want 2 (HTTP and NATS_LISTEN)", n)
	}
}

func TestUnreachableDatabaseStopsStartup(t *testing.T) {
	t.Parallel()
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1",
		"DATABASE_DSN=postgres://gpt:hunter2-secret@127.0.0.1:1/gpt?sslmode=disable")
	select {
	case err := <-p.exited:
		p.exited <- err
		if err == nil {
			t.Fatal("started with an unreachable database")
		}
	case <-time.After(40 * time.Second):
		t.Fatal("still running with an unreachable database")
	}
	out := p.out.String()
	if !strings.Contains(out, "DATABASE_DSN") || strings.Contains(out, "hunter2") {
		t.Fatalf("the error must name DATABASE_DSN and hide the password:\n%s", out)
	}
}

func TestInvalidConfigurationStopsStartup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := startProc(t, dir, "PORT=abc", "SERVER_READ_TIMEOUT=-5", "LOG_LEVEL=loud", "AUTH_KEY=s3cret-value-not-to-print")
	var err error
	select {
	case err = <-p.exited:
		p.exited <- err
	case <-time.After(15 * time.Second):
		t.Fatal("gpt-load kept running with an invalid configuration")
	}
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want status 2", err)
	}
	out := p.out.String()
	for _, name := range []string{"PORT", "SERVER_READ_TIMEOUT", "LOG_LEVEL"} {
		if !strings.Contains(out, name) {
			t.Errorf("the error does not name %s:\n%s", name, out)
		}
	}
	if strings.Contains(out, "s3cret-value") {
		t.Error("a secret was printed")
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		t.Error("a data directory was created although nothing should start")
	}
}

// listeningSockets counts the TCP sockets in LISTEN state that process pid holds.
func listeningSockets(t *testing.T, pid int) int {
	t.Helper()
	listening := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 9 && fields[3] == "0A" {
				listening[fields[9]] = true
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err != nil {
			continue
		}
		if inode, ok := strings.CutPrefix(link, "socket:["); ok && listening[strings.TrimSuffix(inode, "]")] {
			n++
		}
	}
	return n
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}
