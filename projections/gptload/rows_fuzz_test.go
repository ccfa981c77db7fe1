package gptload

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/projections/sqlstore"
)

// FuzzImportRows feeds the conversion of gpt-load rows arbitrary column values, as a
// damaged or hand-edited gpt-load database could hold. A group row becomes a create body
// that the group rules accept or refuse with EINVALID, never a panic; a request-log row
// becomes one whose text columns are valid UTF-8 without NUL (PostgreSQL refuses both)
// and within our column sizes, and whose key opens with this node's cipher.
func FuzzImportRows(f *testing.F) {
	f.Add("g", "standard", "openai", "m", "/v1/chat/completions", []byte(`[{"url":"https://u","weight":1}]`), []byte(`{"max_retries":1}`), []byte(`[]`), []byte(`{}`), []byte(`null`), "sk-1", "log-1", "/v1/x?q=1")
	f.Add("", "aggregate", "gemini", "", "", []byte(`null`), []byte(``), []byte(`[{"key":"X","action":"remove"}]`), []byte(`{"a":"b"}`), []byte(`{"t":1}`), "", strings.Repeat("é", 40), "\x00\xff")
	f.Add("bad name", "mixed", "cohere", " ", "https://x", []byte(`{`), []byte(`[1]`), []byte(`"x"`), []byte(`[]`), []byte(`1`), "\x00", "", "")
	theirs, ours := &events.Cipher{}, &events.Cipher{}
	var err error
	if ours, err = events.NewCipher("fuzz-Node-Key-0123456789"); err != nil {
		f.Fatal(err)
	}
	im := &Import{theirs: theirs, t: Target{Cipher: ours}}
	st := domain.NewState(domain.DefaultSettings())
	f.Fuzz(func(t *testing.T, name, typ, channel, model, endpoint string, upstreams, config, rules, redirects, overrides []byte, key, id, path string) {
		in := groupInput(srcGroup{Name: name, Type: typ, ChannelType: channel, TestModel: model, ValidationEndpoint: endpoint,
			Upstreams: upstreams, Config: config, HeaderRules: rules, ModelRedirectRules: redirects, ParamOverrides: overrides, ProxyKeys: key})
		if _, err := domain.DecideCreateGroup(st, in); err != nil && domain.ErrorCode(err) != domain.EINVALID {
			t.Fatalf("group %q refused with %v, not EINVALID", name, err)
		}

		row, err := im.logRow(srcLog{ID: id, Timestamp: time.Unix(0, 0), GroupID: 1, GroupName: name, ParentGroupName: typ,
			KeyValue: key, Model: model, SourceIP: channel, RequestPath: path, ErrorMessage: endpoint, UserAgent: string(config),
			RequestType: string(rules), UpstreamAddr: string(upstreams), RequestBody: string(overrides)}, func(g uint64) uint64 { return g })
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			col string
			v   string
			max int
		}{
			{"id", row.ID, 36}, {"group_name", row.GroupName, sqlstore.MaxGroupNameLen}, {"parent_group_name", row.ParentGroupName, sqlstore.MaxGroupNameLen},
			{"model", row.Model, 1 << 16}, {"source_ip", row.SourceIP, sqlstore.MaxSourceIPLen}, {"request_path", row.RequestPath, sqlstore.MaxRequestPathLen},
			{"error_message", row.ErrorMessage, 1 << 16}, {"user_agent", row.UserAgent, 1 << 12}, {"request_type", row.RequestType, sqlstore.MaxRequestTypeLen},
			{"upstream_addr", row.UpstreamAddr, sqlstore.MaxUpstreamAddrLen}, {"request_body", row.RequestBody, sqlstore.MaxRequestBodyLen},
		} {
			if !utf8.ValidString(c.v) || strings.ContainsRune(c.v, 0) || len(c.v) > c.max {
				t.Fatalf("%s %q: not valid UTF-8 without NUL within %d bytes", c.col, c.v, c.max)
			}
		}
		if key != "" {
			plain, err := ours.Decrypt(row.KeyValue)
			if err != nil || plain != key || row.KeyHash != ours.Hash(key).String() {
				t.Fatalf("key %q stored as %q (%v), hash %q", key, row.KeyValue, err, row.KeyHash)
			}
		}
	})
}
