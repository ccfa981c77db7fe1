// Command loadtest measures the proxy against a bare reverse proxy on loopback, in one run.
//
//	go run ./cmd/loadtest run [-duration 5s] [-warmup 1s] [-concurrency 1,64] [-keys 100]
//	go run ./cmd/loadtest affinity [-conversations 1000] [-keys 100] [-duration 5s] [-concurrency 64]
//
// run starts three child processes of this same binary: a fake upstream (upstream), a bare
// net/http/httputil.ReverseProxy in front of it (baseline), and a gpt-load node core with
// the proxy in front of it (node: embedded JetStream, projections, key-health facts,
// request logs published and written to SQL by the batch projector, as shipped; -sql none
// leaves them in the stream). It then drives each target (the upstream directly,
// the baseline, the node) with a fixed number of concurrent clients for a fixed time,
// plain JSON and streaming (SSE), and prints one markdown table: requests per second, p50
// and p99 latency, errors, and the CPU time the target process spent per request, read
// from the process itself with getrusage. Every process runs on this machine; every
// address is 127.0.0.1.
//
// affinity measures prompt-cache affinity instead (see affinity.go): conversations of
// growing turns through a group with prompt_cache_affinity and through one without, the
// share of turns that reach the key of the conversation's previous turn, and throughput.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: loadtest run|affinity|upstream|baseline|node [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runAll(os.Args[2:])
	case "affinity":
		err = runAffinity(os.Args[2:])
	case "upstream":
		err = serveUpstream(os.Args[2:])
	case "baseline":
		err = serveBaseline(os.Args[2:])
	case "node":
		err = serveNode(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// cpuPath answers the process's CPU time (user + system, microseconds) on every server.
const cpuPath = "/__cpu"

func cpuMicros() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Sec*1e6 + ru.Utime.Usec + ru.Stime.Sec*1e6 + ru.Stime.Usec
}

func withCPU(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == cpuPath {
			fmt.Fprint(w, cpuMicros())
			return
		}
		h.ServeHTTP(w, r)
	})
}

// listen binds 127.0.0.1:0, prints the address for the parent and serves until stdin
// closes (the parent is gone) or a signal.
func listenAndServe(h http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: withCPU(h), ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("listening http://%s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop()
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// The fake upstream's answers: an OpenAI chat completion, or its stream of 10 events
// (each flushed on its own) closed by a usage event and [DONE].
const plainAnswer = `{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-bench","choices":[{"index":0,"message":{"role":"assistant","content":"The quick brown fox jumps over the lazy dog."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}`

func serveUpstream(args []string) error {
	fs := flag.NewFlagSet("upstream", flag.ExitOnError)
	events := fs.Int("events", 10, "SSE events per streamed answer")
	fs.Parse(args)
	chunks := make([][]byte, *events)
	for i := range chunks {
		chunks[i] = fmt.Appendf(nil, "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-bench\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token%d \"},\"finish_reason\":null}]}\n\n", i)
	}
	last := []byte("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-bench\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":10,\"total_tokens\":22}}\n\ndata: [DONE]\n\n")
	plain := []byte(plainAnswer)
	return listenAndServe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		if auth == "" {
			http.Error(w, `{"error":{"message":"no key"}}`, http.StatusUnauthorized)
			return
		}
		// Which key served: the affinity measure reads it (the keys are fake).
		w.Header().Set(keyHeader, strings.TrimPrefix(auth, "Bearer "))
		if !bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(plain)))
			w.Write(plain)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fl := w.(http.Flusher)
		for _, c := range chunks {
			w.Write(c)
			fl.Flush()
		}
		w.Write(last)
		fl.Flush()
	}))
}

// serveBaseline is the bare reverse proxy: httputil.ReverseProxy with Rewrite, the default
// transport with an idle pool large enough for the load, the /proxy/{group} prefix cut as
// our proxy does, an upstream key set in place of the client's, the body read first.
func serveBaseline(args []string) error {
	fs := flag.NewFlagSet("baseline", flag.ExitOnError)
	upstream := fs.String("upstream", "", "upstream base URL")
	fs.Parse(args)
	target, err := url.Parse(*upstream)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 256
	tr.ForceAttemptHTTP2 = false
	rp := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			p := strings.TrimPrefix(pr.In.URL.Path, "/proxy/bench")
			pr.Out.URL.Path = strings.TrimRight(target.Path, "/") + p
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Set("Authorization", "Bearer sk-upstream")
		},
	}
	// The body is read before it is forwarded, as any proxy that may retry must do. (Left
	// to stream it, ReverseProxy here broke 1-3% of streamed answers: the server's
	// handling of the half-read request body closed the upstream connection mid-answer.)
	return listenAndServe(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(b))
		rp.ServeHTTP(w, r)
	}))
}

type child struct {
	name string
	cmd  *exec.Cmd
	url  string
	in   io.WriteCloser
}

func startChild(name string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{name: name, cmd: cmd, in: in}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
			c.url = u
			go io.Copy(io.Discard, out)
			return c, nil
		}
	}
	c.stop()
	return nil, fmt.Errorf("%s did not start", name)
}

// stop ends the child by closing its stdin, then waits for it (by its own pid only).
func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

func (c *child) cpu(client *http.Client) (time.Duration, error) {
	resp, err := client.Get(c.url + cpuPath)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	us, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(us) * time.Microsecond, err
}

type result struct {
	target, mode string
	conc         int
	reqs, errs   int
	rps          float64
	p50, p99     time.Duration
	cpuPerReq    time.Duration
}

func runAll(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	duration := fs.Duration("duration", 5*time.Second, "measured time per phase")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each phase")
	concList := fs.String("concurrency", "1,64", "client concurrency levels")
	keys := fs.Int("keys", 100, "upstream keys in the proxy's group")
	modeList := fs.String("modes", "plain,stream", "answer kinds: plain, stream")
	rounds := fs.Int("rounds", 3, "rounds over all phases; the table gives each phase's median")
	sqlDSN := fs.String("sql", "", "where the node writes its request logs (default: SQLite in its data directory; \"none\": not written)")
	named := fs.Bool("named", false, "also load gpt-load through a named proxy key whose RPM, TPM and token quotas are far above the load (target gpt-load+limits)")
	fs.Parse(args)
	var concs []int
	for _, s := range strings.Split(*concList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad concurrency %q", s)
		}
		concs = append(concs, n)
	}

	up, err := startChild("upstream", "upstream")
	if err != nil {
		return err
	}
	defer up.stop()
	base, err := startChild("baseline", "baseline", "-upstream", up.url)
	if err != nil {
		return err
	}
	defer base.stop()
	dir, err := os.MkdirTemp("", "loadtest-node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	node, err := startChild("node", "node", "-upstream", up.url, "-data", dir, "-keys", strconv.Itoa(*keys), "-sql", *sqlDSN,
		"-named="+strconv.FormatBool(*named))
	if err != nil {
		return err
	}
	defer node.stop()

	type target struct {
		name string
		c    *child
		url  string
		key  string
	}
	targets := []target{
		{"direct", up, up.url + "/v1/chat/completions", benchKey},
		{"baseline", base, base.url + "/proxy/bench/v1/chat/completions", benchKey},
		{"gpt-load", node, node.url + "/proxy/bench/v1/chat/completions", benchKey},
	}
	if *named {
		secret, err := os.ReadFile(filepath.Join(dir, "named-key"))
		if err != nil {
			return fmt.Errorf("named key: %w", err)
		}
		targets = append(targets, target{"gpt-load+limits", node, node.url + "/proxy/bench/v1/chat/completions", string(secret)})
	}
	ctl := &http.Client{Timeout: 5 * time.Second}
	var results []result
	for round := 1; round <= *rounds; round++ {
		for _, mode := range strings.Split(*modeList, ",") {
			for _, conc := range concs {
				for _, tg := range targets {
					drive(tg.url, tg.key, mode, conc, *warmup)
					c0, err := tg.c.cpu(ctl)
					if err != nil {
						return err
					}
					r := drive(tg.url, tg.key, mode, conc, *duration)
					c1, err := tg.c.cpu(ctl)
					if err != nil {
						return err
					}
					r.target = tg.name
					if r.reqs > 0 {
						r.cpuPerReq = (c1 - c0) / time.Duration(r.reqs)
					}
					results = append(results, r)
					fmt.Fprintf(os.Stderr, "round %d %-6s c=%-3d %-8s %8.0f req/s p50 %-9v p99 %-9v errors %d cpu/req %v\n",
						round, mode, conc, tg.name, r.rps, r.p50, r.p99, r.errs, r.cpuPerReq)
				}
			}
		}
	}
	results = medians(results)
	report(results, concs)
	return nil
}

// benchKey is the proxy key of the bench group (and what the upstream and baseline accept).
const benchKey = "sk-bench-proxy"

// drive runs conc clients against url with proxy key key for d and measures every request,
// the full body read included.
func drive(target, key, mode string, conc int, d time.Duration) result {
	body := []byte(`{"model":"gpt-bench","messages":[{"role":"user","content":"Say something short."}]}`)
	if mode == "stream" {
		body = []byte(`{"model":"gpt-bench","stream":true,"messages":[{"role":"user","content":"Say something short."}]}`)
	}
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			bad := 0
			for time.Now().Before(deadline) {
				t := time.Now()
				req, _ := http.NewRequest("POST", target, bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					bad++
					noteError(err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					bad++
					noteError(fmt.Sprint(resp.StatusCode, " ", err))
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return summarize(mode, conc, lat, errs, time.Since(start))
}

// summarize is the result of a phase: the latencies of its good requests, its errors.
func summarize(mode string, conc int, lat []time.Duration, errs int, elapsed time.Duration) result {
	slices.Sort(lat)
	r := result{mode: mode, conc: conc, reqs: len(lat) + errs, errs: errs, rps: float64(len(lat)) / elapsed.Seconds()}
	if n := len(lat); n > 0 {
		r.p50 = lat[n/2]
		r.p99 = lat[min(n-1, n*99/100)]
	}
	return r
}

// medians folds the rounds: per phase, the median of each measure and the sum of errors.
func medians(rs []result) []result {
	type phase struct {
		target, mode string
		conc         int
	}
	var order []phase
	by := map[phase][]result{}
	for _, r := range rs {
		p := phase{r.target, r.mode, r.conc}
		if _, ok := by[p]; !ok {
			order = append(order, p)
		}
		by[p] = append(by[p], r)
	}
	med := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var out []result
	for _, p := range order {
		g := by[p]
		m := result{target: p.target, mode: p.mode, conc: p.conc}
		for _, r := range g {
			m.reqs += r.reqs
			m.errs += r.errs
		}
		m.rps = med(g, func(r result) float64 { return r.rps })
		m.p50 = time.Duration(med(g, func(r result) float64 { return float64(r.p50) }))
		m.p99 = time.Duration(med(g, func(r result) float64 { return float64(r.p99) }))
		m.cpuPerReq = time.Duration(med(g, func(r result) float64 { return float64(r.cpuPerReq) }))
		out = append(out, m)
	}
	return out
}

var firstErrors sync.Map

// noteError prints the first occurrence of each kind of client-side error.
func noteError(s string) {
	if _, seen := firstErrors.LoadOrStore(s, true); !seen {
		fmt.Fprintln(os.Stderr, "client error:", s)
	}
}

func report(rs []result, concs []int) {
	find := func(target, mode string, conc int) result {
		for _, r := range rs {
			if r.target == target && r.mode == mode && r.conc == conc {
				return r
			}
		}
		return result{}
	}
	fmt.Println("| mode | concurrency | target | req/s | p50 | p99 | errors | CPU per request |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Printf("| %s | %d | %s | %.0f | %v | %v | %d | %v |\n", r.mode, r.conc, r.target, r.rps,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.errs, r.cpuPerReq.Round(100*time.Nanosecond))
	}
	fmt.Println()
	fmt.Println("| mode | throughput at c=" + strconv.Itoa(concs[len(concs)-1]) + " vs baseline | CPU/request vs baseline (c=" + strconv.Itoa(concs[len(concs)-1]) + ") | p99 added at c=" + strconv.Itoa(concs[0]) + " vs baseline's |")
	fmt.Println("|---|---|---|---|")
	hi, lo := concs[len(concs)-1], concs[0]
	for _, mode := range []string{"plain", "stream"} {
		b, g := find("baseline", mode, hi), find("gpt-load", mode, hi)
		d1, b1, g1 := find("direct", mode, lo), find("baseline", mode, lo), find("gpt-load", mode, lo)
		added := func(r result) time.Duration { return r.p99 - d1.p99 }
		ratio := func(a, b float64) string {
			if b == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2f", a/b)
		}
		fmt.Printf("| %s | %s | %s | %s (ours %v, baseline %v) |\n", mode,
			ratio(g.rps, b.rps), ratio(float64(g.cpuPerReq), float64(b.cpuPerReq)),
			ratio(float64(added(g1)), float64(added(b1))), added(g1).Round(time.Microsecond), added(b1).Round(time.Microsecond))
	}
}
