package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
)

// bigKey is the i-th key of a big test group: "sk-<16 hex digits>-<7 digits>". Its masked
// form ends with the last four digits of i.
func bigKey(i int) string {
	return fmt.Sprintf("sk-%016x-%07d", rand.New(rand.NewPCG(uint64(i), 42)).Uint64(), i)
}

// keyFile is the text of keys [from, from+count), one per line.
func keyFile(from, count int) string {
	var b strings.Builder
	b.Grow(count * 30)
	for i := from; i < from+count; i++ {
		b.WriteString(bigKey(i))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestImport100kWithProgress uploads a file of 100,000 keys to add-async and watches the
// task to its end, as the dashboard does.
func TestImport100kWithProgress(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	gid := n.group("big")
	const total = 100_000
	text := keyFile(0, total) + keyFile(0, 10) // ten duplicates at the end
	start := time.Now()
	var st tasks.Status
	n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "keys.txt", text).ok(t, &st)
	if !st.IsRunning || st.Total != total+10 || st.TaskType != tasks.KeyImport {
		t.Fatalf("initial %+v", st)
	}
	seen := n.waitTask(5 * time.Minute)
	took := time.Since(start)
	end := seen[len(seen)-1]
	if end.Error != "" || end.Processed != total+10 || !sameJSON(jsonAny(t, end.Result), `{"added_count":100000,"ignored_count":10}`) {
		t.Fatalf("end %+v %s", end, end.Result)
	}
	intermediate := 0
	for i, s := range seen {
		if i > 0 && s.Processed < seen[i-1].Processed {
			t.Errorf("progress went back: %d after %d", s.Processed, seen[i-1].Processed)
		}
		if s.IsRunning && s.Processed > 0 && s.Processed < s.Total {
			intermediate++
		}
	}
	if intermediate == 0 {
		t.Errorf("no progress seen before the end (%d polls)", len(seen))
	}
	if got := n.keysIn(gid); got != total {
		t.Errorf("%d keys in the group", got)
	}
	t.Logf("100,000 keys imported in %v (%.0f keys/s), %d polls, %d with progress", took, total/took.Seconds(), len(seen), intermediate)
}

func (n *testNode) keysIn(gid uint64) int {
	c := 0
	n.proj.Read(func(s *domain.State) { c = s.Keys(gid).Len() })
	return c
}

// millionGroup makes a group of count big keys through the commands, fast.
func millionGroup(tb testing.TB, n *testNode, count int) uint64 {
	tb.Helper()
	g, err := n.cmd.CreateGroup(context.Background(), events.ActorAdmin, domain.GroupInput{
		Name: str("million"), ChannelType: str("openai"), TestModel: str("m"),
		Upstreams: []byte(`[{"url":"https://u.example","weight":1}]`),
	})
	if err != nil {
		tb.Fatal(err)
	}
	const batch = 100_000
	for from := 0; from < count; from += batch {
		values := make([]string, 0, batch)
		for i := from; i < min(from+batch, count); i++ {
			values = append(values, bigKey(i))
		}
		if _, err := n.cmd.AddKeys(context.Background(), events.ActorAdmin, g.ID, values, nil); err != nil {
			tb.Fatal(err)
		}
	}
	// Some invalid keys, spread over the group.
	var facts []domain.Fact
	n.proj.Read(func(s *domain.State) {
		i := 0
		s.Keys(g.ID).Each(func(k *domain.Key) bool {
			if i%10_000 == 5 {
				for range 3 {
					facts = append(facts, domain.KeyValidated{GroupID: g.ID, KeyID: k.ID, Status: 401, Message: "invalid"})
				}
			}
			i++
			return true
		})
	})
	if err := n.cmd.RecordHealth(context.Background(), events.ActorSystem, facts...); err != nil {
		tb.Fatal(err)
	}
	return g.ID
}

// keyPageQueries are the list and search requests measured on a big group.
func keyPageQueries(gid uint64, count int) []struct{ name, query string } {
	return []struct{ name, query string }{
		{"first-page", fmt.Sprint("/api/keys?group_id=", gid)},
		{"middle-page", fmt.Sprint("/api/keys?group_id=", gid, "&page=", count/15/2)},
		{"last-page", fmt.Sprint("/api/keys?group_id=", gid, "&page=", (count+14)/15)},
		{"status-invalid", fmt.Sprint("/api/keys?group_id=", gid, "&status=invalid&page=2&page_size=50")},
		{"key-value", fmt.Sprint("/api/keys?group_id=", gid, "&key_value=", bigKey(count/3))},
		{"search-masked", fmt.Sprint("/api/keys?group_id=", gid, "&search=****4321")},
		{"search-hash", fmt.Sprint("/api/keys?group_id=", gid, "&search=abcdef")},
		{"search-page-1000", fmt.Sprint("/api/keys?group_id=", gid, "&search=sk-&page_size=1000")},
	}
}

// TestMillionKeysListAndSearch lists and searches a group of 1,000,000 keys.
func TestMillionKeysListAndSearch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a group of 1,000,000 keys")
	}
	t.Parallel()
	n := startNode(t, nodeOpts{})
	const count = 1_000_000
	start := time.Now()
	gid := millionGroup(t, n, count)
	t.Logf("1,000,000 keys added through the commands in %v", time.Since(start))

	page := func(query string) (int, []any) {
		d := n.do(http.MethodGet, query, nil).data(t)
		return int(field(t, d, "pagination", "total_items").(float64)), list(t, field(t, d, "items"))
	}
	total, items := page(fmt.Sprint("/api/keys?group_id=", gid))
	if total != count || len(items) != 15 || field(t, items[0], "key_value") != bigKey(count-1) || !sortedDesc(ids(t, items)) {
		t.Errorf("first page: %d %s", total, jsonString(items[:1]))
	}
	total, items = page(fmt.Sprint("/api/keys?group_id=", gid, "&page=", (count+14)/15))
	if total != count || len(items) != count%15 || field(t, items[len(items)-1], "key_value") != bigKey(0) {
		t.Errorf("last page: %d items", len(items))
	}
	total, items = page(fmt.Sprint("/api/keys?group_id=", gid, "&status=invalid&page_size=1000"))
	if total != count/10_000 || len(items) != count/10_000 {
		t.Errorf("invalid keys: %d, %d on the page", total, len(items))
	}
	total, items = page(fmt.Sprint("/api/keys?group_id=", gid, "&search=****4321"))
	if total != count/10_000 || len(items) != 15 || !strings.HasSuffix(field(t, items[0], "key_value").(string), "4321") {
		t.Errorf("masked search: %d", total)
	}
	h := n.store.Cipher().Hash(bigKey(777_777)).String()
	total, items = page(fmt.Sprint("/api/keys?group_id=", gid, "&search=", h[:12]))
	if total != 1 || field(t, items[0], "key_value") != bigKey(777_777) {
		t.Errorf("hash search: %d %s", total, jsonString(items))
	}
	total, items = page(fmt.Sprint("/api/keys?group_id=", gid, "&key_value=", bigKey(123_456)))
	if total != 1 || field(t, items[0], "key_value") != bigKey(123_456) {
		t.Errorf("key_value: %d", total)
	}

	// Latency of each kind of page.
	for _, q := range keyPageQueries(gid, count) {
		var d []time.Duration
		for range 5 { // BenchmarkKeyPage1M measures them properly
			t0 := time.Now()
			n.do(http.MethodGet, q.query, nil).ok(t, nil)
			d = append(d, time.Since(t0))
		}
		slices.Sort(d)
		t.Logf("%-16s p50 %v, max %v", q.name, d[len(d)/2], d[len(d)-1])
	}

	// The export streams them all.
	t0 := time.Now()
	r := n.do(http.MethodGet, fmt.Sprint("/api/keys/export?group_id=", gid), nil)
	if lines := strings.Count(string(r.body), "\n"); lines != count {
		t.Errorf("export: %d lines", lines)
	}
	t.Logf("export of 1,000,000 keys: %v, %d bytes", time.Since(t0), len(r.body))
}

// BenchmarkImport is the throughput of add-async from the request to the end of the task,
// for a file upload and a JSON body of 100,000 and 1,000,000 keys.
func BenchmarkImport(b *testing.B) {
	for _, c := range []struct {
		name  string
		count int
		file  bool
	}{
		{"upload-100k", 100_000, true},
		{"json-100k", 100_000, false},
		{"upload-1M", 1_000_000, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			n := startNode(b, nodeOpts{})
			text := keyFile(0, c.count)
			body, _ := json.Marshal(map[string]any{"keys_text": text})
			i := 0
			for b.Loop() {
				b.StopTimer()
				gid := n.group(fmt.Sprint("g", i))
				i++
				b.StartTimer()
				var r *response
				if c.file {
					r = n.upload(map[string]string{"group_id": fmt.Sprint(gid)}, "keys.txt", text)
				} else {
					r = n.do(http.MethodPost, "/api/keys/add-async", strings.Replace(string(body), "{", fmt.Sprintf(`{"group_id":%d,`, gid), 1))
				}
				r.ok(b, nil)
				seen := n.waitTask(10 * time.Minute)
				if end := seen[len(seen)-1]; end.Error != "" || end.Processed != c.count {
					b.Fatalf("import ended with %+v", end)
				}
				b.StopTimer()
				n.do(http.MethodDelete, fmt.Sprint("/api/groups/", gid), nil).ok(b, nil)
				b.StartTimer()
			}
			b.ReportMetric(float64(c.count)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}

// BenchmarkKeyPage1M is the latency of a list or search page on a group of 1,000,000
// keys, with its 99th percentile.
func BenchmarkKeyPage1M(b *testing.B) {
	n := startNode(b, nodeOpts{})
	const count = 1_000_000
	gid := millionGroup(b, n, count)
	for _, q := range keyPageQueries(gid, count) {
		b.Run(q.name, func(b *testing.B) {
			var d []time.Duration
			for b.Loop() {
				t0 := time.Now()
				r := n.do(http.MethodGet, q.query, nil)
				d = append(d, time.Since(t0))
				if r.code != http.StatusOK {
					b.Fatalf("%d %s", r.code, r.body)
				}
			}
			slices.Sort(d)
			b.ReportMetric(float64(d[len(d)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, "p50-ms")
		})
	}
}
