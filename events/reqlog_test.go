package events_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/events/eventstest"
)

func sampleLog(i int) domain.RequestLog {
	return domain.RequestLog{
		ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Timestamp: t0.Add(time.Duration(i) * time.Millisecond),
		GroupID: uint64(i%3 + 1), GroupName: "g\"<ü>\n", ParentGroupID: 9, ParentGroupName: "agg",
		KeyID: uint64(i), KeyValue: fmt.Sprintf("sk-key-%d", i%5), Model: "gpt-4o", IsSuccess: i%2 == 0,
		SourceIP: "127.0.0.1", StatusCode: 200, RequestPath: "/proxy/g/v1/chat?x=1", DurationMS: int64(i),
		ErrorMessage: "bad \x01 \xff", UserAgent: "ua", RequestType: domain.RequestFinal,
		UpstreamAddr: "http://up/v1", IsStream: true, RequestBody: `{"a":"\u2028"}`,
		PromptTokens: 3, CompletionTokens: 4, TotalTokens: 7,
		ProxyKeyFP: domain.ProxyKeyFingerprint(fmt.Sprintf("sk-proxy-%d", i%2)), ProxyKeyName: domain.ProxyKeyGlobal,
	}
}

func reqLogMessages(t *testing.T, js jetstream.JetStream) []jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, events.ReqLogStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *m)
	}
	return out
}

func TestReqLogBatchesAndDecodes(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	st := openStore(t, js, events.StoreConfig{})
	p := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1", MaxRecords: 50, Cipher: st.Cipher()}, zerolog.Nop())
	const n = 230
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				rec := sampleLog(i)
				p.Record(&rec)
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := reqLogMessages(t, js)
	if len(msgs) < 5 || len(msgs) > 20 {
		t.Fatalf("%d records in %d messages: not batched by 50", n, len(msgs))
	}
	got := map[string]domain.RequestLog{}
	ids := map[string]bool{}
	for _, m := range msgs {
		if m.Subject != events.ReqLogSubject || m.Header.Get("Nats-Msg-Id") == "" || ids[m.Header.Get("Nats-Msg-Id")] {
			t.Fatalf("message %s %v", m.Subject, m.Header)
		}
		ids[m.Header.Get("Nats-Msg-Id")] = true
		recs, enc, err := events.DecodeRequestLogs(m.Header, m.Data)
		if err != nil || enc {
			t.Fatal(err, enc)
		}
		for _, r := range recs {
			got[r.ID] = r
		}
	}
	if len(got) != n {
		t.Fatalf("%d records decoded, want %d", len(got), n)
	}
	for i := range n {
		want := sampleLog(i)
		want.KeyHash = st.Cipher().Hash(want.KeyValue).String()
		want.ErrorMessage = "bad \x01 \ufffd"
		r := got[want.ID]
		if !r.Timestamp.Equal(want.Timestamp) {
			t.Fatalf("timestamp %v", r.Timestamp)
		}
		r.Timestamp = want.Timestamp
		if !reflect.DeepEqual(r, want) {
			t.Fatalf("record %d:\n got %+v\nwant %+v", i, r, want)
		}
	}
	if s := p.Stats(); s.Published != n || s.Dropped != 0 || s.QueuedBytes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestReqLogEncryptsKeys(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	c := events.NewCipherMust(t, "a-long-encryption-password")
	openStore(t, js, events.StoreConfig{Cipher: c})
	p := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1", Cipher: c}, zerolog.Nop())
	rec := sampleLog(1)
	p.Record(&rec)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := reqLogMessages(t, js)
	recs, enc, err := events.DecodeRequestLogs(msgs[0].Header, msgs[0].Data)
	if err != nil || !enc || len(recs) != 1 {
		t.Fatal(err, enc, len(recs))
	}
	if recs[0].KeyValue == rec.KeyValue {
		t.Fatal("key value in clear")
	}
	if v, err := c.Decrypt(recs[0].KeyValue); err != nil || v != rec.KeyValue {
		t.Fatalf("decrypt: %q %v", v, err)
	}
	if recs[0].KeyHash != c.Hash(rec.KeyValue).String() {
		t.Fatal("hash")
	}
}

// While the log stream is missing, records queue up to the bound and the rest are
// counted as dropped; once the stream exists the queued ones are stored.
func TestReqLogQueuesWhileStreamIsDown(t *testing.T) {
	t.Parallel()
	js := eventstest.RunServer(t, "").JetStream(t)
	p := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1", MaxRecords: 10, MaxQueuedBytes: 20_000}, zerolog.Nop())
	for i := range 200 {
		rec := sampleLog(i)
		p.Record(&rec)
	}
	s := p.Stats()
	if s.Dropped == 0 || s.QueuedBytes == 0 || s.QueuedBytes > 20_000 {
		t.Fatalf("stats %+v", s)
	}
	queued := 200 - int(s.Dropped)
	openStore(t, js, events.StoreConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range reqLogMessages(t, js) {
		recs, _, err := events.DecodeRequestLogs(m.Header, m.Data)
		if err != nil {
			t.Fatal(err)
		}
		n += len(recs)
	}
	if n != queued {
		t.Fatalf("%d stored, %d were queued", n, queued)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAppendRequestLogMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for i := range 5 {
		rec := sampleLog(i)
		if i == 3 {
			rec = domain.RequestLog{ID: "x", Timestamp: t0, RequestType: domain.RequestRetry}
		}
		var fromJSON, fromAppend map[string]any
		b, _ := json.Marshal(rec)
		json.Unmarshal(b, &fromJSON)
		if err := json.Unmarshal(events.AppendRequestLog(nil, &rec), &fromAppend); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromJSON, fromAppend) {
			t.Fatalf("\n json   %v\n append %v", fromJSON, fromAppend)
		}
	}
}

func FuzzAppendRequestLog(f *testing.F) {
	f.Add("id", "grp", "\xff\x00\u2028", int64(5))
	f.Fuzz(func(t *testing.T, id, group, msg string, n int64) {
		rec := domain.RequestLog{ID: id, GroupName: group, ErrorMessage: msg, DurationMS: n, Timestamp: t0}
		var back domain.RequestLog
		if err := json.Unmarshal(events.AppendRequestLog(nil, &rec), &back); err != nil {
			t.Fatal(err)
		}
		var want domain.RequestLog
		b, _ := json.Marshal(rec)
		json.Unmarshal(b, &want)
		if back.ID != want.ID || back.GroupName != want.GroupName || back.ErrorMessage != want.ErrorMessage || back.DurationMS != n {
			t.Fatalf("%+v != %+v", back, want)
		}
	})
}

func BenchmarkReqLogRecord(b *testing.B) {
	js := eventstest.RunServer(b, "").JetStream(b)
	octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ocancel()
	if _, err := events.OpenStore(octx, js, events.StoreConfig{Node: "n1"}, zerolog.Nop()); err != nil {
		b.Fatal(err)
	}
	p := events.NewReqLogPublisher(js, events.ReqLogConfig{Node: "n1"}, zerolog.Nop())
	rec := sampleLog(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := rec
		for pb.Next() {
			p.Record(&r)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
}
