package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKeyFileUploadThroughTheBinary uploads a key file as multipart to a node started on
// an empty DATA_DIR, as the dashboard does, and sees the keys imported.
func TestKeyFileUploadThroughTheBinary(t *testing.T) {
	t.Parallel()
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey)
	p.waitHealthy(t)
	var g struct {
		ID uint64 `json:"id"`
	}
	api(t, p, "POST", "/api/groups", `{"name":"upload","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://api.example.com","weight":1}]}`, &g)

	const n = 20000
	var file bytes.Buffer
	for i := range n {
		fmt.Fprintf(&file, "sk-upload-%06d\r\n", i)
	}
	file.WriteString("sk-upload-000001\n") // a duplicate
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "keys.TXT")
	fw.Write(file.Bytes())
	mw.WriteField("group_id", strconv.FormatUint(g.ID, 10))
	mw.Close()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/api/keys/add-async", p.port), &body)
	req.Header.Set("Authorization", "Bearer "+e2eAdminKey)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(raw), `"task_type":"KEY_IMPORT"`) {
		t.Fatalf("upload: %d %s", resp.StatusCode, raw)
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		var st struct {
			IsRunning bool   `json:"is_running"`
			Error     string `json:"error"`
			Result    struct {
				Added   int `json:"added_count"`
				Ignored int `json:"ignored_count"`
			} `json:"result"`
		}
		api(t, p, "GET", "/api/tasks/status", "", &st)
		if !st.IsRunning {
			if st.Error != "" || st.Result.Added != n || st.Result.Ignored != 1 {
				t.Fatalf("import ended with %+v", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("import still running after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var page struct {
		Pagination struct {
			Total int `json:"total_items"`
		} `json:"pagination"`
	}
	api(t, p, "GET", fmt.Sprintf("/api/keys?group_id=%d", g.ID), "", &page)
	if page.Pagination.Total != n {
		t.Fatalf("%d keys in the group, want %d", page.Pagination.Total, n)
	}
	if _, err := os.Stat(p.dir + "/data/tmp"); !os.IsNotExist(err) {
		t.Errorf("a spool directory exists under DATA_DIR: %v", err)
	}
}

// vmRSS reads the resident set size of a process, in KiB.
func vmRSS(t *testing.T, pid int) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// oversized sends a request announcing (or streaming, chunked) a body of 200 MB without
// sending more than 1 MiB of it, and returns the status the node answered with: an answer
// that comes before the body was sent is one given without reading it.
func oversized(port int, path string, chunked bool, auth string) (int, error) {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 15*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
	if auth != "" {
		head += "Authorization: Bearer " + auth + "\r\n"
	}
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += "Content-Length: 200000000\r\n\r\n"
	}
	go func() { // the body, until the node hangs up or 1 MiB is sent
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		chunk := []byte(`{"auth_key":"` + strings.Repeat("x", 64<<10))
		for sent := 0; sent < 1<<20; sent += len(chunk) {
			var err error
			if chunked {
				_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = conn.Write(chunk)
			}
			if err != nil {
				return
			}
			chunk = bytes.Repeat([]byte("x"), 64<<10)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestOversizedRequestsLeaveMemoryFlat sends many parallel oversized requests without the
// admin key, announced and chunked, to login and to admin routes: each is answered 413 or
// 401 before its body is sent, and the node's resident memory stays where it was.
func TestOversizedRequestsLeaveMemoryFlat(t *testing.T) {
	t.Parallel()
	p := startProc(t, t.TempDir(), "PORT="+strconv.Itoa(freePort(t)), "HOST=127.0.0.1", "AUTH_KEY="+e2eAdminKey)
	p.waitHealthy(t)
	pid := p.cmd.Process.Pid
	// Warm up the paths once so their code and buffers are resident before measuring.
	for _, path := range []string{"/api/auth/login", "/api/keys/add-multiple"} {
		oversized(p.port, path, false, "")
	}
	before := vmRSS(t, pid)

	type target struct {
		path    string
		chunked bool
		want    int
	}
	targets := []target{
		{"/api/auth/login", false, 413}, {"/api/auth/login", true, 413},
		{"/api/keys/add-multiple", false, 401}, {"/api/keys/add-multiple", true, 401},
		{"/api/keys/add-async", false, 401}, {"/api/keys/add-async", true, 401},
		{"/api/groups", true, 401}, {"/api/keys/test-multiple", false, 401},
	}
	var wg sync.WaitGroup
	errs := make(chan string, 256)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				tg := targets[(w+i)%len(targets)]
				code, err := oversized(p.port, tg.path, tg.chunked, "")
				if err != nil || code != tg.want {
					errs <- fmt.Sprintf("%s chunked=%v: %d %v, want %d", tg.path, tg.chunked, code, err, tg.want)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	after := vmRSS(t, pid)
	t.Logf("VmRSS before %d KiB, after 128 oversized requests %d KiB", before, after)
	if after-before > 8<<10 {
		t.Fatalf("resident memory grew by %d KiB (from %d to %d)", after-before, before, after)
	}
}
