package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// keyHeader carries the key the fake upstream was called with back to the client.
const keyHeader = "X-Bench-Key"

// conversation is one simulated chat: its turns are sent one after another, each
// repeating the system prompt and the first question and adding the turns since.
type conversation struct {
	mu   sync.Mutex
	id   int
	turn int
	last string // the key that served the previous turn
}

// body is the request of the conversation's next turn. The history is cut at maxTurns
// pairs (the leading messages stay), so bodies stay small over a long run.
func (c *conversation) body() []byte {
	const maxTurns = 8
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"model":"gpt-bench","messages":[{"role":"system","content":"You are a terse assistant for conversation tests."},{"role":"user","content":"Opening question of conversation %d."}`, c.id)
	for i := range min(c.turn, maxTurns) {
		fmt.Fprintf(&b, `,{"role":"assistant","content":"Answer %d."},{"role":"user","content":"Follow-up %d."}`, i, i)
	}
	b.WriteString("]}")
	return b.Bytes()
}

type affinityResult struct {
	result
	followUps, sameKey int
}

// runAffinity drives conversations through a group without prompt-cache affinity and
// one with it (same node, same keys, same run, alternating rounds) and reports, for each,
// the share of follow-up turns that reached the key of the conversation's previous turn
// (the provider's prompt cache pays off only then), and throughput.
func runAffinity(args []string) error {
	fs := flag.NewFlagSet("affinity", flag.ExitOnError)
	duration := fs.Duration("duration", 5*time.Second, "measured time per phase")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each phase")
	conc := fs.Int("concurrency", 64, "concurrent clients")
	nconv := fs.Int("conversations", 1000, "conversations")
	keys := fs.Int("keys", 100, "upstream keys in each group")
	rounds := fs.Int("rounds", 3, "rounds over both groups; the table gives each one's median")
	fs.Parse(args)
	if *conc < 1 || *nconv < 1 || *keys < 1 {
		return fmt.Errorf("-concurrency, -conversations and -keys must be at least 1")
	}
	up, err := startChild("upstream", "upstream")
	if err != nil {
		return err
	}
	defer up.stop()
	dir, err := os.MkdirTemp("", "loadtest-node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	node, err := startChild("node", "node", "-upstream", up.url, "-data", dir, "-keys", strconv.Itoa(*keys), "-sql", "none", "-affinity")
	if err != nil {
		return err
	}
	defer node.stop()

	groups := []string{"bench", "bench-affinity"}
	by := map[string][]affinityResult{}
	for round := 1; round <= *rounds; round++ {
		order := groups
		if round%2 == 0 { // the machine's load drifts: alternate which group goes first
			order = []string{groups[1], groups[0]}
		}
		for _, g := range order {
			// Fresh conversations per phase, opened by the warm-up.
			target := node.url + "/proxy/" + g + "/v1/chat/completions"
			convs := newConversations(*nconv, round)
			driveConversations(target, convs, *conc, *warmup)
			r := driveConversations(target, convs, *conc, *duration)
			r.target = g
			by[g] = append(by[g], r)
			fmt.Fprintf(os.Stderr, "round %d %-15s %8.0f req/s p50 %-9v p99 %-9v errors %d same key %d/%d\n",
				round, g, r.rps, r.p50, r.p99, r.errs, r.sameKey, r.followUps)
		}
	}
	fmt.Printf("%d conversations over %d keys, %d clients, median of %d rounds:\n\n", *nconv, *keys, *conc, *rounds)
	fmt.Println("| group | prompt_cache_affinity | follow-up turns on the previous turn's key | req/s | p50 | p99 | errors |")
	fmt.Println("|---|---|---|---|---|---|---|")
	rps := map[string]float64{}
	for _, g := range groups {
		rs := by[g]
		med := func(f func(affinityResult) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			slices.Sort(v)
			return v[len(v)/2]
		}
		hit := med(func(r affinityResult) float64 { return float64(r.sameKey) / float64(max(r.followUps, 1)) })
		rps[g] = med(func(r affinityResult) float64 { return r.rps })
		errs := 0
		for _, r := range rs {
			errs += r.errs
		}
		fmt.Printf("| %s | %v | %.1f%% | %.0f | %v | %v | %d |\n", g, g == "bench-affinity", 100*hit, rps[g],
			time.Duration(med(func(r affinityResult) float64 { return float64(r.p50) })).Round(time.Microsecond),
			time.Duration(med(func(r affinityResult) float64 { return float64(r.p99) })).Round(time.Microsecond), errs)
	}
	fmt.Printf("\nthroughput with affinity vs without: %.2f\n", rps["bench-affinity"]/rps["bench"])
	return nil
}

func newConversations(n, salt int) []*conversation {
	convs := make([]*conversation, n)
	for i := range convs {
		convs[i] = &conversation{id: salt*1_000_000 + i}
	}
	return convs
}

// driveConversations runs conc clients for d: each takes the next conversation in turn
// (one turn at a time per conversation) and sends its next turn.
func driveConversations(target string, convs []*conversation, conc int, d time.Duration) affinityResult {
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Uint64
	var mu sync.Mutex
	var lat []time.Duration
	var out affinityResult
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 4096)
			bad, follow, same := 0, 0, 0
			for time.Now().Before(deadline) {
				c := convs[next.Add(1)%uint64(len(convs))]
				if !c.mu.TryLock() {
					continue // its previous turn is still on the way
				}
				t := time.Now()
				req, _ := http.NewRequest("POST", target, bytes.NewReader(c.body()))
				req.Header.Set("Authorization", "Bearer sk-bench-proxy")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					c.mu.Unlock()
					bad++
					noteError(err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 {
					c.mu.Unlock()
					bad++
					noteError(fmt.Sprint(resp.StatusCode, " ", err))
					continue
				}
				mine = append(mine, time.Since(t))
				key := resp.Header.Get(keyHeader)
				if c.turn > 0 {
					follow++
					if key == c.last {
						same++
					}
				}
				c.turn++
				c.last = key
				c.mu.Unlock()
			}
			mu.Lock()
			lat = append(lat, mine...)
			out.errs += bad
			out.followUps += follow
			out.sameKey += same
			mu.Unlock()
		})
	}
	wg.Wait()
	errs := out.errs
	out.result = summarize("plain", conc, lat, errs, time.Since(start))
	return out
}
