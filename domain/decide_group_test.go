package domain_test

import (
	"cmp"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gpt-load/domain"
)

// sortedParents is ParentsOf(id) sorted by aggregate id (kept although ParentsOf now sorts).
func sortedParents(s *domain.State, id uint64) []domain.SubGroup {
	p := s.ParentsOf(id)
	slices.SortFunc(p, func(a, b domain.SubGroup) int { return cmp.Compare(a.GroupID, b.GroupID) })
	return p
}

// createFold has a group "taken" (id 1) and a deleted group "gone" (id 2): the next group
// id is 3.
func createFold(t *testing.T) *fold {
	t.Helper()
	f := newFold()
	f.create(t, stdBody("taken", "openai"))
	f.create(t, stdBody("gone", "openai"))
	f.apply(domain.GroupDeleted{GroupID: 2, Name: "gone"})
	return f
}

func TestDecideCreateGroup(t *testing.T) {
	t.Parallel()
	const ups = `"upstreams":[{"url":"https://u.example.com","weight":1}]`
	std := func(extra string) string {
		return `{"name":"new","channel_type":"openai","test_model":"m",` + ups + extra + `}`
	}
	tests := []struct {
		name   string
		body   string
		code   domain.Code
		fields []string
		check  func(t *testing.T, g domain.Group)
	}{
		{name: "minimal standard", body: stdBody("new", "openai"), check: func(t *testing.T, g domain.Group) {
			want := domain.Group{
				ID: 3, Name: "new", Type: domain.GroupStandard, ChannelType: domain.ChannelOpenAI,
				Upstreams: []domain.Upstream{{URL: "https://up.example.com", Weight: 1}}, TestModel: "m",
				ModelRedirectRules: map[string]string{}, HeaderRules: []domain.HeaderRule{},
			}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("group = %+v\nwant    %+v", g, want)
			}
			if h, m := jsonOf(t, g.HeaderRules), jsonOf(t, g.ModelRedirectRules); h != "[]" || m != "{}" {
				t.Errorf("header_rules %s, model_redirect_rules %s", h, m)
			}
			if !g.Config.IsEmpty() || g.ParamOverrides != nil {
				t.Errorf("config %+v, param_overrides %s", g.Config, g.ParamOverrides)
			}
		}},
		{name: "every field", body: `{"name":"  full ","display_name":"  Full  ","description":" d ","group_type":"standard",
			"upstreams":[{"url":" https://a.example.com ","weight":3},{"url":"http://b.example.com","weight":0}],
			"channel_type":"anthropic","sort":-4,"test_model":" claude ","validation_endpoint":" /v1/messages?beta=true ",
			"param_overrides":{ "temperature" : 0.5 },"model_redirect_rules":{" a ":" b "},"model_redirect_strict":true,
			"config":{"max_retries":5,"proxy_url":null},"header_rules":[{"key":"x-foo","value":" v ","action":"set"},{"key":" ","value":"dropped","action":"set"}],
			"proxy_keys":"  k1, k2  "}`, check: func(t *testing.T, g domain.Group) {
			want := domain.Group{
				ID: 3, Name: "full", DisplayName: "Full", Description: "d", Type: domain.GroupStandard,
				ChannelType: domain.ChannelAnthropic,
				Upstreams:   []domain.Upstream{{URL: "https://a.example.com", Weight: 3}, {URL: "http://b.example.com", Weight: 0}},
				Sort:        -4, TestModel: "claude", ValidationEndpoint: "/v1/messages?beta=true",
				ParamOverrides:      json.RawMessage(`{"temperature":0.5}`),
				ModelRedirectRules:  map[string]string{"a": "b"},
				ModelRedirectStrict: true,
				Config:              domain.GroupConfig{MaxRetries: new(5)},
				HeaderRules:         []domain.HeaderRule{{Key: "X-Foo", Value: " v ", Action: "set"}},
				ProxyKeys:           "k1, k2",
			}
			if !reflect.DeepEqual(g, want) {
				t.Errorf("group = %+v\nwant    %+v", g, want)
			}
		}},
		{name: "aggregate gets forced values", body: `{"name":"agg","group_type":"aggregate","channel_type":"gemini","upstreams":"junk","test_model":"x","validation_endpoint":"no slash","display_name":"A","sort":3,"proxy_keys":"p"}`,
			check: func(t *testing.T, g domain.Group) {
				want := domain.Group{
					ID: 3, Name: "agg", DisplayName: "A", Type: domain.GroupAggregate, ChannelType: domain.ChannelGemini,
					Upstreams: []domain.Upstream{}, Sort: 3, TestModel: "-", ProxyKeys: "p",
					ModelRedirectRules: map[string]string{}, HeaderRules: []domain.HeaderRule{},
				}
				if !reflect.DeepEqual(g, want) {
					t.Errorf("group = %+v\nwant    %+v", g, want)
				}
				if u := jsonOf(t, g.Upstreams); u != "[]" {
					t.Errorf("upstreams = %s", u)
				}
			}},
		{name: "aggregate with config, header rules and empty redirect rules", body: `{"name":"agg","group_type":"aggregate","channel_type":"openai","config":{"max_retries":1},"header_rules":[{"key":"a","value":"b","action":"remove"}],"model_redirect_rules":{}}`,
			check: func(t *testing.T, g domain.Group) {
				if *g.Config.MaxRetries != 1 || len(g.HeaderRules) != 1 || g.ModelRedirectRules == nil || len(g.ModelRedirectRules) != 0 {
					t.Errorf("group = %+v", g)
				}
			}},
		{name: "aggregate with redirect rules", body: `{"name":"agg","group_type":"aggregate","channel_type":"openai","model_redirect_rules":{"a":"b"}}`, code: domain.EINVALID, fields: []string{"model_redirect_rules"}},
		{name: "aggregate without channel type", body: `{"name":"agg","group_type":"aggregate"}`, code: domain.EINVALID, fields: []string{"channel_type"}},
		{name: "no name", body: `{"channel_type":"openai","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "null name", body: `{"name":null,"channel_type":"openai","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "blank name", body: `{"name":"  ","channel_type":"openai","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "bad name", body: `{"name":"New","channel_type":"openai","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "name of 101 characters", body: `{"name":"` + strings.Repeat("a", 101) + `","channel_type":"openai","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "name of 100 characters", body: `{"name":"` + strings.Repeat("a", 100) + `","channel_type":"openai","test_model":"m",` + ups + `}`},
		{name: "no channel type", body: `{"name":"new","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"channel_type"}},
		{name: "bad channel type", body: `{"name":"new","channel_type":"OpenAI","test_model":"m",` + ups + `}`, code: domain.EINVALID, fields: []string{"channel_type"}},
		{name: "bad group type", body: std(`,"group_type":"mixed"`), code: domain.EINVALID, fields: []string{"group_type"}},
		{name: "no test model", body: `{"name":"new","channel_type":"openai",` + ups + `}`, code: domain.EINVALID, fields: []string{"test_model"}},
		{name: "blank test model", body: `{"name":"new","channel_type":"openai","test_model":"  ",` + ups + `}`, code: domain.EINVALID, fields: []string{"test_model"}},
		{name: "no upstreams", body: `{"name":"new","channel_type":"openai","test_model":"m"}`, code: domain.EINVALID, fields: []string{"upstreams"}},
		{name: "null upstreams", body: `{"name":"new","channel_type":"openai","test_model":"m","upstreams":null}`, code: domain.EINVALID, fields: []string{"upstreams"}},
		{name: "empty upstreams", body: `{"name":"new","channel_type":"openai","test_model":"m","upstreams":[]}`, code: domain.EINVALID, fields: []string{"upstreams"}},
		{name: "bad upstream url", body: `{"name":"new","channel_type":"openai","test_model":"m","upstreams":[{"url":"ftp://x","weight":1}]}`, code: domain.EINVALID, fields: []string{"upstreams[0].url"}},
		{name: "bad validation endpoint", body: std(`,"validation_endpoint":"v1/chat"`), code: domain.EINVALID, fields: []string{"validation_endpoint"}},
		{name: "unknown config field", body: std(`,"config":{"bogus":1}`), code: domain.EINVALID, fields: []string{"config.bogus"}},
		{name: "config of the wrong type", body: std(`,"config":{"max_retries":"5"}`), code: domain.EINVALID, fields: []string{"config.max_retries"}},
		{name: "config not an object", body: std(`,"config":[1]`), code: domain.EINVALID, fields: []string{"config"}},
		{name: "duplicate header", body: std(`,"header_rules":[{"key":"x-a","value":"1","action":"set"},{"key":"X-A","value":"2","action":"set"}]`), code: domain.EINVALID, fields: []string{"header_rules[1].key"}},
		{name: "header rules not an array", body: std(`,"header_rules":{}`), code: domain.EINVALID, fields: []string{"header_rules"}},
		{name: "blank redirect target", body: std(`,"model_redirect_rules":{"a":" "}`), code: domain.EINVALID, fields: []string{"model_redirect_rules.a"}},
		{name: "redirect rules not strings", body: std(`,"model_redirect_rules":{"a":1}`), code: domain.EINVALID, fields: []string{"model_redirect_rules"}},
		{name: "param overrides not an object", body: std(`,"param_overrides":[1]`), code: domain.EINVALID, fields: []string{"param_overrides"}},
		{name: "null param overrides", body: std(`,"param_overrides":null`), check: func(t *testing.T, g domain.Group) {
			if g.ParamOverrides != nil {
				t.Errorf("param_overrides = %s", g.ParamOverrides)
			}
		}},
		{name: "display name of 256 characters", body: std(`,"display_name":"` + strings.Repeat("é", 256) + `"`), code: domain.EINVALID, fields: []string{"display_name"}},
		{name: "display name of 255 characters", body: std(`,"display_name":"` + strings.Repeat("é", 255) + `"`)},
		{name: "description of 513 characters", body: std(`,"description":"` + strings.Repeat("d", 513) + `"`), code: domain.EINVALID, fields: []string{"description"}},
		{name: "every problem in one error", body: `{"name":"Bad!","group_type":"mixed","upstreams":[],"validation_endpoint":"x","config":{"bogus":1},
			"header_rules":[{"key":"a","action":"nope"}],"model_redirect_rules":{"m":""},"param_overrides":[1],"description":"` + strings.Repeat("d", 513) + `"}`,
			code: domain.EINVALID, fields: []string{"name", "channel_type", "group_type", "description", "test_model", "upstreams", "validation_endpoint", "config.bogus", "header_rules[0].action", "model_redirect_rules.m", "param_overrides"}},
		{name: "standard problems of an aggregate are not checked", body: `{"name":"agg","group_type":"aggregate","channel_type":"openai","upstreams":[],"test_model":" "}`},
		{name: "name taken", body: stdBody("taken", "openai"), code: domain.EDUPLICATE},
		{name: "name taken after trimming", body: `{"name":" taken ","channel_type":"openai","test_model":"m",` + ups + `}`, code: domain.EDUPLICATE},
		{name: "name of a deleted group", body: stdBody("gone", "openai"), check: func(t *testing.T, g domain.Group) {
			if g.ID != 3 || g.Name != "gone" {
				t.Errorf("group %d %q", g.ID, g.Name)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := createFold(t)
			fact, err := domain.DecideCreateGroup(f.State, gin(t, tt.body))
			if f.NumGroups() != 1 {
				t.Fatalf("deciding changed the state: %d groups", f.NumGroups())
			}
			if tt.code == domain.EINVALID {
				wantFields(t, err, tt.fields...)
				return
			}
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if fact.Group.ID != 3 {
				t.Errorf("id = %d, want 3", fact.Group.ID)
			}
			if tt.check != nil {
				tt.check(t, fact.Group)
			}
			f.apply(fact)
			g, ok := f.GroupByName(fact.Group.Name)
			if !ok || g.ID != 3 || !g.CreatedAt.Equal(at(f.seq)) {
				t.Errorf("after apply: %+v, %v", g, ok)
			}
			// The next group gets the next id.
			next, err := domain.DecideCreateGroup(f.State, gin(t, stdBody("next", "openai")))
			if err != nil || next.Group.ID != 4 {
				t.Errorf("next id = %d, %v", next.Group.ID, err)
			}
		})
	}
}

// updateFold holds:
//
//	1 g1     standard openai with every field set
//	2 agg    aggregate openai, members m1
//	3 m1     standard openai, member of agg and agg2
//	4 taken  standard openai
//	5 agg2   aggregate openai, members m1
//	6 gm     standard gemini
func updateFold(t *testing.T) *fold {
	t.Helper()
	f := newFold()
	f.create(t, `{"name":"g1","display_name":"G1","description":"d","channel_type":"openai","sort":2,"test_model":"m1",
		"upstreams":[{"url":"https://u.example.com","weight":1}],"param_overrides":{"t":1},"model_redirect_rules":{"a":"b"},
		"model_redirect_strict":true,"config":{"max_retries":5},"header_rules":[{"key":"x-a","value":"1","action":"set"}],"proxy_keys":"pk"}`)
	f.create(t, aggBody("agg", "openai"))
	f.create(t, stdBody("m1", "openai"))
	f.create(t, stdBody("taken", "openai"))
	f.create(t, aggBody("agg2", "openai"))
	f.create(t, stdBody("gm", "gemini"))
	f.link(2, 3)
	f.link(5, 3)
	f.apply(domain.GroupValidated{GroupID: 1})
	return f
}

func TestDecideUpdateGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		id      uint64
		body    string
		code    domain.Code
		fields  []string
		msg     string                // part of the message of the first field error
		want    func(g *domain.Group) // the expected change to the old group
		changed []string
	}{
		{name: "nothing", id: 1, body: `{}`},
		{name: "nothing, aggregate", id: 2, body: `{}`},
		{name: "every field null", id: 1, body: `{"name":null,"display_name":null,"description":null,"channel_type":null,"sort":null,
			"validation_endpoint":null,"model_redirect_strict":null,"proxy_keys":null,"param_overrides":null,"model_redirect_rules":null,
			"config":null,"header_rules":null,"test_model":null,"group_type":null}`},
		{name: "every field null, aggregate", id: 2, body: `{"name":null,"config":null,"header_rules":null,"model_redirect_rules":null,"param_overrides":null}`},
		{name: "same name", id: 1, body: `{"name":"g1"}`},
		{name: "rename", id: 1, body: `{"name":" g1new "}`, want: func(g *domain.Group) { g.Name = "g1new" }, changed: []string{"name"}},
		{name: "rename to a taken name", id: 1, body: `{"name":"taken"}`, code: domain.EDUPLICATE},
		{name: "rename to a bad name", id: 1, body: `{"name":"G1"}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "rename to empty", id: 1, body: `{"name":""}`, code: domain.EINVALID, fields: []string{"name"}},
		{name: "display name cleared", id: 1, body: `{"display_name":"  "}`, want: func(g *domain.Group) { g.DisplayName = "" }, changed: []string{"display_name"}},
		{name: "description", id: 1, body: `{"description":" new "}`, want: func(g *domain.Group) { g.Description = "new" }, changed: []string{"description"}},
		{name: "description too long", id: 1, body: `{"description":"` + strings.Repeat("x", 513) + `"}`, code: domain.EINVALID, fields: []string{"description"}},
		{name: "channel type", id: 1, body: `{"channel_type":"anthropic"}`, want: func(g *domain.Group) { g.ChannelType = domain.ChannelAnthropic }, changed: []string{"channel_type"}},
		{name: "bad channel type", id: 1, body: `{"channel_type":"bogus"}`, code: domain.EINVALID, fields: []string{"channel_type"}},
		{name: "same channel type of a sub-group", id: 3, body: `{"channel_type":"openai"}`},
		{name: "channel type of a sub-group", id: 3, body: `{"channel_type":"anthropic"}`, code: domain.EINVALID, fields: []string{"channel_type"}, msg: "2 aggregate"},
		{name: "channel type of an aggregate is ignored", id: 2, body: `{"channel_type":"gemini"}`},
		{name: "bad channel type of an aggregate is ignored", id: 2, body: `{"channel_type":"bogus"}`},
		{name: "group type is ignored", id: 1, body: `{"group_type":"aggregate"}`},
		{name: "group type of an aggregate is ignored", id: 2, body: `{"group_type":"standard"}`},
		{name: "sort", id: 1, body: `{"sort":-9}`, want: func(g *domain.Group) { g.Sort = -9 }, changed: []string{"sort"}},
		{name: "null upstreams", id: 1, body: `{"upstreams":null}`, code: domain.EINVALID, fields: []string{"upstreams"}, msg: "at least one upstream is required"},
		{name: "empty upstreams", id: 1, body: `{"upstreams":[]}`, code: domain.EINVALID, fields: []string{"upstreams"}},
		{name: "bad upstreams", id: 1, body: `{"upstreams":[{"url":"https://a.example.com","weight":0}]}`, code: domain.EINVALID, fields: []string{"upstreams"}},
		{name: "upstreams", id: 1, body: `{"upstreams":[{"url":"https://a.example.com","weight":2}]}`,
			want:    func(g *domain.Group) { g.Upstreams = []domain.Upstream{{URL: "https://a.example.com", Weight: 2}} },
			changed: []string{"upstreams"}},
		{name: "upstreams of an aggregate are stored", id: 2, body: `{"upstreams":[{"url":"https://a.example.com","weight":2}]}`,
			want:    func(g *domain.Group) { g.Upstreams = []domain.Upstream{{URL: "https://a.example.com", Weight: 2}} },
			changed: []string{"upstreams"}},
		{name: "upstreams of an aggregate are validated", id: 2, body: `{"upstreams":null}`, code: domain.EINVALID, fields: []string{"upstreams"}},
		{name: "empty test model is unchanged", id: 1, body: `{"test_model":""}`},
		{name: "blank test model", id: 1, body: `{"test_model":"  "}`, code: domain.EINVALID, fields: []string{"test_model"}, msg: "test model cannot be empty"},
		{name: "test model", id: 1, body: `{"test_model":" m2 "}`, want: func(g *domain.Group) { g.TestModel = "m2" }, changed: []string{"test_model"}},
		{name: "validation endpoint", id: 1, body: `{"validation_endpoint":" /custom "}`, want: func(g *domain.Group) { g.ValidationEndpoint = "/custom" }, changed: []string{"validation_endpoint"}},
		{name: "bad validation endpoint", id: 1, body: `{"validation_endpoint":"http://x/y"}`, code: domain.EINVALID, fields: []string{"validation_endpoint"}},
		{name: "validation endpoint of a sub-group", id: 3, body: `{"validation_endpoint":"/custom"}`, code: domain.EINVALID, fields: []string{"validation_endpoint"}, msg: "2 aggregate"},
		{name: "same effective validation endpoint of a sub-group", id: 3, body: `{"validation_endpoint":"/v1/chat/completions"}`,
			want: func(g *domain.Group) { g.ValidationEndpoint = "/v1/chat/completions" }, changed: []string{"validation_endpoint"}},
		{name: "empty validation endpoint of a sub-group", id: 3, body: `{"validation_endpoint":""}`, changed: []string{"validation_endpoint"}},
		{name: "config cleared", id: 1, body: `{"config":{}}`, want: func(g *domain.Group) { g.Config = domain.GroupConfig{} }, changed: []string{"config"}},
		{name: "config replaced", id: 1, body: `{"config":{"blacklist_threshold":0}}`,
			want: func(g *domain.Group) { g.Config = domain.GroupConfig{BlacklistThreshold: new(0)} }, changed: []string{"config"}},
		{name: "bad config", id: 1, body: `{"config":{"max_retries":-1}}`, code: domain.EINVALID, fields: []string{"config.max_retries"}},
		{name: "header rules cleared", id: 1, body: `{"header_rules":[]}`, want: func(g *domain.Group) { g.HeaderRules = []domain.HeaderRule{} }, changed: []string{"header_rules"}},
		{name: "header rules replaced", id: 1, body: `{"header_rules":[{"key":"x-b","value":"2","action":"remove"}]}`,
			want:    func(g *domain.Group) { g.HeaderRules = []domain.HeaderRule{{Key: "X-B", Value: "2", Action: "remove"}} },
			changed: []string{"header_rules"}},
		{name: "bad header rules", id: 1, body: `{"header_rules":[{"key":"x b","value":"2","action":"set"}]}`, code: domain.EINVALID, fields: []string{"header_rules[0].key"}},
		{name: "redirect rules cleared", id: 1, body: `{"model_redirect_rules":{}}`, want: func(g *domain.Group) { g.ModelRedirectRules = map[string]string{} }, changed: []string{"model_redirect_rules"}},
		{name: "redirect rules of an aggregate", id: 2, body: `{"model_redirect_rules":{"a":"b"}}`, code: domain.EINVALID, fields: []string{"model_redirect_rules"}},
		{name: "empty redirect rules of an aggregate", id: 2, body: `{"model_redirect_rules":{}}`, changed: []string{"model_redirect_rules"}},
		{name: "param overrides emptied", id: 1, body: `{"param_overrides":{}}`, want: func(g *domain.Group) { g.ParamOverrides = json.RawMessage(`{}`) }, changed: []string{"param_overrides"}},
		{name: "bad param overrides", id: 1, body: `{"param_overrides":"x"}`, code: domain.EINVALID, fields: []string{"param_overrides"}},
		{name: "strict off", id: 1, body: `{"model_redirect_strict":false}`, want: func(g *domain.Group) { g.ModelRedirectStrict = false }, changed: []string{"model_redirect_strict"}},
		{name: "proxy keys", id: 1, body: `{"proxy_keys":" a,b "}`, want: func(g *domain.Group) { g.ProxyKeys = "a,b" }, changed: []string{"proxy_keys"}},
		{name: "proxy keys cleared", id: 1, body: `{"proxy_keys":""}`, want: func(g *domain.Group) { g.ProxyKeys = "" }, changed: []string{"proxy_keys"}},
		{name: "several fields", id: 1, body: `{"name":"renamed","sort":1,"config":{},"proxy_keys":"z"}`,
			want: func(g *domain.Group) {
				g.Name, g.Sort, g.Config, g.ProxyKeys = "renamed", 1, domain.GroupConfig{}, "z"
			},
			changed: []string{"name", "sort", "config", "proxy_keys"}},
		{name: "every problem in one error", id: 3, body: `{"name":"Bad","channel_type":"gemini","upstreams":null,"test_model":" ","validation_endpoint":"x",
			"config":{"bogus":1},"header_rules":[{"key":"k","action":"x"}],"param_overrides":1,"display_name":"` + strings.Repeat("x", 256) + `"}`,
			code: domain.EINVALID, fields: []string{"name", "display_name", "channel_type", "upstreams", "test_model", "validation_endpoint", "config.bogus", "header_rules[0].action", "param_overrides"}},
		{name: "unknown group", id: 99, body: `{}`, code: domain.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := updateFold(t)
			old, _ := f.Group(tt.id)
			var kept domain.Group
			if old != nil {
				kept = *old
				kept.Upstreams = slices.Clone(old.Upstreams)
				kept.HeaderRules = slices.Clone(old.HeaderRules)
			}
			fact, err := domain.DecideUpdateGroup(f.State, tt.id, gin(t, tt.body))
			if old != nil {
				if now, _ := f.Group(tt.id); now != old || !reflect.DeepEqual(*old, kept) {
					t.Fatalf("deciding changed the state: %+v", now)
				}
			}
			if tt.code == domain.EINVALID {
				wantFields(t, err, tt.fields...)
				if tt.msg != "" && !strings.Contains(domain.ErrorFields(err)[0].Message, tt.msg) {
					t.Errorf("message %q does not contain %q", domain.ErrorFields(err)[0].Message, tt.msg)
				}
				return
			}
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			want := kept
			if tt.want != nil {
				tt.want(&want)
			}
			if !reflect.DeepEqual(fact.Group, want) {
				t.Errorf("group = %+v\nwant    %+v", fact.Group, want)
			}
			if jsonOf(t, fact.Group) != jsonOf(t, want) {
				t.Errorf("group as JSON = %s\nwant            %s", jsonOf(t, fact.Group), jsonOf(t, want))
			}
			if !slices.Equal(fact.Changed, tt.changed) {
				t.Errorf("changed = %v, want %v", fact.Changed, tt.changed)
			}
			parents := sortedParents(f.State, tt.id)
			f.apply(fact)
			now, _ := f.Group(tt.id)
			applied := fact.Group
			applied.UpdatedAt = at(f.seq)
			if !reflect.DeepEqual(*now, applied) || !now.CreatedAt.Equal(old.CreatedAt) {
				t.Errorf("after apply = %+v\nwant          %+v", *now, applied)
			}
			if p := sortedParents(f.State, tt.id); !reflect.DeepEqual(p, parents) {
				t.Errorf("parents changed: %v, were %v", p, parents)
			}
		})
	}
}

func TestDecideDeleteGroup(t *testing.T) {
	t.Parallel()
	f := updateFold(t)
	for _, id := range []uint64{1, 2, 3} {
		g, _ := f.Group(id)
		fact, err := domain.DecideDeleteGroup(f.State, id)
		if err != nil || fact != (domain.GroupDeleted{GroupID: id, Name: g.Name}) {
			t.Errorf("DecideDeleteGroup(%d) = %+v, %v", id, fact, err)
		}
	}
	_, err := domain.DecideDeleteGroup(f.State, 99)
	wantCode(t, err, domain.ENOTFOUND)
	f.apply(domain.GroupDeleted{GroupID: 1, Name: "g1"})
	_, err = domain.DecideDeleteGroup(f.State, 1)
	wantCode(t, err, domain.ENOTFOUND)
}

func TestDecideCopyGroup(t *testing.T) {
	t.Parallel()
	long95 := strings.Repeat("n", 95)
	long96 := strings.Repeat("n", 96)
	tests := []struct {
		name    string
		id      uint64
		taken   []string // names created before the copy
		code    domain.Code
		newName string
		display string
	}{
		{name: "first copy", id: 1, newName: "g1_copy", display: "G1 Copy"},
		{name: "second copy", id: 1, taken: []string{"g1_copy"}, newName: "g1_copy_2", display: "G1 Copy"},
		{name: "third copy", id: 1, taken: []string{"g1_copy", "g1_copy_2"}, newName: "g1_copy_3", display: "G1 Copy"},
		{name: "a gap is filled", id: 1, taken: []string{"g1_copy", "g1_copy_3"}, newName: "g1_copy_2", display: "G1 Copy"},
		{name: "no display name", id: 3, newName: "m1_copy", display: ""},
		{name: "aggregate", id: 2, newName: "agg_copy", display: ""},
		{name: "copy of a copy", id: 9, taken: []string{"g1_copy"}, newName: "g1_copy_copy", display: ""},
		{name: "unknown group", id: 99, code: domain.ENOTFOUND},
		{name: "name of 95 characters", id: 7, newName: long95 + "_copy"},
		{name: "name of 95 characters, copy taken", id: 7, taken: []string{long95 + "_copy"}, code: domain.EDUPLICATE},
		{name: "name of 96 characters", id: 8, code: domain.EDUPLICATE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := updateFold(t)
			f.create(t, stdBody(long95, "openai")) // 7
			f.create(t, stdBody(long96, "openai")) // 8
			f.addKeys(1, "k1", "k2")
			for _, n := range tt.taken {
				f.create(t, stdBody(n, "openai"))
			}
			nextID := uint64(9 + len(tt.taken))
			src, _ := f.Group(tt.id)
			fact, err := domain.DecideCopyGroup(f.State, tt.id)
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			want := *src
			want.ID, want.Name, want.DisplayName = nextID, tt.newName, tt.display
			want.SubGroups, want.LastValidatedAt = nil, fact.Group.LastValidatedAt
			if !fact.Group.LastValidatedAt.IsZero() {
				t.Errorf("last validated at %v", fact.Group.LastValidatedAt)
			}
			got := fact.Group
			got.CreatedAt, got.UpdatedAt = want.CreatedAt, want.UpdatedAt
			if !reflect.DeepEqual(got, want) {
				t.Errorf("copy = %+v\nwant   %+v", got, want)
			}
			if jsonOf(t, got) != jsonOf(t, want) {
				t.Errorf("copy as JSON = %s\nwant           %s", jsonOf(t, got), jsonOf(t, want))
			}
			// The copy shares nothing with the source.
			if len(fact.Group.Upstreams) > 0 {
				fact.Group.Upstreams[0].URL = "https://changed.example.com"
			}
			fact.Group.ModelRedirectRules["zz"] = "zz"
			if src.ModelRedirectRules["zz"] != "" || len(src.Upstreams) > 0 && src.Upstreams[0].URL == "https://changed.example.com" {
				t.Fatal("copy aliases the source group")
			}
			delete(fact.Group.ModelRedirectRules, "zz")
			if len(fact.Group.Upstreams) > 0 {
				fact.Group.Upstreams[0].URL = src.Upstreams[0].URL
			}
			parents := sortedParents(f.State, 3)
			f.apply(fact)
			c, ok := f.GroupByName(tt.newName)
			if !ok || c.ID != nextID || !c.CreatedAt.Equal(at(f.seq)) || len(c.SubGroups) != 0 {
				t.Fatalf("copy after apply = %+v, %v", c, ok)
			}
			if f.Keys(c.ID).Len() != 0 || f.Keys(1).Len() != 2 {
				t.Errorf("keys: copy %d, source %d", f.Keys(c.ID).Len(), f.Keys(1).Len())
			}
			if s, _ := f.Group(tt.id); s != src {
				t.Error("source group replaced by the copy")
			}
			if p := sortedParents(f.State, 3); !reflect.DeepEqual(p, parents) {
				t.Errorf("links changed by the copy: %v, were %v", p, parents)
			}
		})
	}
}

func TestDecideReorder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		items  []domain.GroupOrder
		fields []string
	}{
		{"empty", nil, nil},
		{"known groups", []domain.GroupOrder{{GroupID: 1, Sort: 3}, {GroupID: 2, Sort: -1}, {GroupID: 1, Sort: 4}}, nil},
		{"unknown group", []domain.GroupOrder{{GroupID: 1, Sort: 3}, {GroupID: 99, Sort: 1}}, []string{"items[1].id"}},
		{"several unknown groups", []domain.GroupOrder{{GroupID: 0, Sort: 3}, {GroupID: 1, Sort: 1}, {GroupID: 98, Sort: 1}}, []string{"items[0].id", "items[2].id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := updateFold(t)
			items := slices.Clone(tt.items)
			fact, err := domain.DecideReorder(f.State, items)
			if tt.fields != nil {
				wantFields(t, err, tt.fields...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(fact.Items) != len(tt.items) || len(tt.items) > 0 && !slices.Equal(fact.Items, tt.items) {
				t.Errorf("items = %v", fact.Items)
			}
			if len(items) > 0 {
				items[0].Sort = 1000
				if fact.Items[0].Sort == 1000 {
					t.Error("fact aliases the input")
				}
			}
		})
	}
}

// subGroupFold holds:
//
//	1  agg   aggregate openai
//	2  gagg  aggregate gemini
//	3  s1    openai
//	4  s2    openai
//	5  s3    openai, validation endpoint /custom
//	6  s4    openai, validation endpoint /v1/chat/completions (the channel default)
//	7  ge1   gemini
//	8  ge2   gemini, validation endpoint /x
//	9  an    anthropic
//	10 agg3  aggregate openai
//	11 lagg  aggregate openai, members s1 (weight 5) and s4 (weight 2)
//	12 gl    aggregate gemini, members ge1 (weight 1)
func subGroupFold(t *testing.T) *fold {
	t.Helper()
	f := newFold()
	f.create(t, aggBody("agg", "openai"))
	f.create(t, aggBody("gagg", "gemini"))
	f.create(t, stdBody("s1", "openai"))
	f.create(t, stdBody("s2", "openai"))
	f.create(t, `{"name":"s3","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"validation_endpoint":"/custom"}`)
	f.create(t, `{"name":"s4","channel_type":"openai","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"validation_endpoint":"/v1/chat/completions"}`)
	f.create(t, stdBody("ge1", "gemini"))
	f.create(t, `{"name":"ge2","channel_type":"gemini","test_model":"m","upstreams":[{"url":"https://u.example.com","weight":1}],"validation_endpoint":"/x"}`)
	f.create(t, stdBody("an", "anthropic"))
	f.create(t, aggBody("agg3", "openai"))
	f.create(t, aggBody("lagg", "openai"))
	f.create(t, aggBody("gl", "gemini"))
	f.apply(domain.SubGroupsChanged{GroupID: 11, SubGroups: []domain.SubGroup{{GroupID: 3, Weight: 5}, {GroupID: 6, Weight: 2}}})
	f.link(12, 7)
	return f
}

func TestDecideAddSubGroups(t *testing.T) {
	t.Parallel()
	sg := func(pairs ...int) []domain.SubGroup {
		var out []domain.SubGroup
		for i := 0; i < len(pairs); i += 2 {
			out = append(out, domain.SubGroup{GroupID: uint64(pairs[i]), Weight: pairs[i+1]})
		}
		return out
	}
	tests := []struct {
		name   string
		target uint64
		add    []domain.SubGroup
		code   domain.Code
		fields []string
		msg    string
		want   []domain.SubGroup
	}{
		{name: "missing target", target: 99, add: sg(3, 1), code: domain.ENOTFOUND},
		{name: "standard target", target: 3, add: sg(4, 1), code: domain.EINVALID},
		{name: "none", target: 1, add: nil, code: domain.EINVALID, fields: []string{"sub_groups"}},
		{name: "one", target: 1, add: sg(3, 10), want: sg(3, 10)},
		{name: "weights 0 and 1000", target: 1, add: sg(3, 0, 4, 1000), want: sg(3, 0, 4, 1000)},
		{name: "explicit default endpoint is the default", target: 1, add: sg(3, 1, 6, 1), want: sg(3, 1, 6, 1)},
		{name: "group id 0", target: 1, add: sg(0, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}},
		{name: "unknown group", target: 1, add: sg(3, 1, 99, 1), code: domain.EINVALID, fields: []string{"sub_groups[1].group_id"}},
		{name: "listed twice", target: 1, add: sg(3, 1, 3, 2), code: domain.EINVALID, fields: []string{"sub_groups[1].group_id"}},
		{name: "negative weight", target: 1, add: sg(3, -1), code: domain.EINVALID, fields: []string{"sub_groups[0].weight"}},
		{name: "weight above 1000", target: 1, add: sg(3, 1001), code: domain.EINVALID, fields: []string{"sub_groups[0].weight"}},
		{name: "aggregate member", target: 1, add: sg(10, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}, msg: "aggregate"},
		{name: "itself", target: 1, add: sg(1, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}},
		{name: "other channel", target: 1, add: sg(9, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}, msg: "channel"},
		{name: "endpoints differ in the batch", target: 1, add: sg(3, 1, 5, 1), code: domain.EINVALID, fields: []string{"sub_groups[1].group_id"}, msg: "endpoint"},
		{name: "endpoint differs from a linked member", target: 11, add: sg(5, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}, msg: "endpoint"},
		{name: "appended to linked members", target: 11, add: sg(4, 7), want: sg(3, 5, 6, 2, 4, 7)},
		{name: "already linked", target: 11, add: sg(3, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}, msg: "already exists"},
		{name: "gemini members with the same endpoint", target: 2, add: sg(7, 1), want: sg(7, 1)},
		{name: "gemini default endpoint then a custom one", target: 2, add: sg(7, 1, 8, 1), code: domain.EINVALID, fields: []string{"sub_groups[1].group_id"}, msg: "endpoint"},
		{name: "gemini custom endpoint then the default", target: 2, add: sg(8, 1, 7, 1), code: domain.EINVALID, fields: []string{"sub_groups[1].group_id"}, msg: "endpoint"},
		{name: "gemini custom endpoint against a linked default", target: 12, add: sg(8, 1), code: domain.EINVALID, fields: []string{"sub_groups[0].group_id"}, msg: "endpoint"},
		{name: "every problem in one error", target: 1, add: sg(0, 1, 10, 1, 9, 2000, 3, -5),
			code: domain.EINVALID, fields: []string{"sub_groups[0].group_id", "sub_groups[1].group_id", "sub_groups[2].group_id", "sub_groups[2].weight", "sub_groups[3].weight"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := subGroupFold(t)
			var before []domain.SubGroup
			if g, ok := f.Group(tt.target); ok {
				before = slices.Clone(g.SubGroups)
			}
			fact, err := domain.DecideAddSubGroups(f.State, tt.target, slices.Clone(tt.add))
			if g, ok := f.Group(tt.target); ok && !slices.Equal(g.SubGroups, before) {
				t.Fatalf("deciding changed the members: %v", g.SubGroups)
			}
			if tt.fields != nil {
				wantFields(t, err, tt.fields...)
				if tt.msg != "" {
					found := false
					for _, fe := range domain.ErrorFields(err) {
						found = found || strings.Contains(fe.Message, tt.msg)
					}
					if !found {
						t.Errorf("no message mentions %q: %v", tt.msg, domain.ErrorFields(err))
					}
				}
				return
			}
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if fact.GroupID != tt.target || !slices.Equal(fact.SubGroups, tt.want) {
				t.Fatalf("fact = %+v, want members %v", fact, tt.want)
			}
			f.apply(fact)
			g, _ := f.Group(tt.target)
			if !slices.Equal(g.SubGroups, tt.want) {
				t.Errorf("members after apply = %v", g.SubGroups)
			}
			for _, m := range tt.want {
				if p := f.ParentsOf(m.GroupID); !slices.Contains(p, domain.SubGroup{GroupID: tt.target, Weight: m.Weight}) {
					t.Errorf("ParentsOf(%d) = %v", m.GroupID, p)
				}
			}
		})
	}
}

func TestDecideSubGroupWeight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target uint64
		member uint64
		weight int
		code   domain.Code
		fields []string
		want   []domain.SubGroup
	}{
		{name: "missing target", target: 99, member: 3, weight: 1, code: domain.ENOTFOUND},
		{name: "standard target", target: 3, member: 4, weight: 1, code: domain.EINVALID},
		{name: "missing link", target: 11, member: 4, weight: 1, code: domain.ENOTFOUND},
		{name: "missing member", target: 11, member: 99, weight: 1, code: domain.ENOTFOUND},
		{name: "negative", target: 11, member: 3, weight: -1, code: domain.EINVALID, fields: []string{"weight"}},
		{name: "above 1000", target: 11, member: 3, weight: 1001, code: domain.EINVALID, fields: []string{"weight"}},
		{name: "zero", target: 11, member: 3, weight: 0, want: []domain.SubGroup{{GroupID: 3, Weight: 0}, {GroupID: 6, Weight: 2}}},
		{name: "1000", target: 11, member: 6, weight: 1000, want: []domain.SubGroup{{GroupID: 3, Weight: 5}, {GroupID: 6, Weight: 1000}}},
		{name: "same weight", target: 11, member: 3, weight: 5, want: []domain.SubGroup{{GroupID: 3, Weight: 5}, {GroupID: 6, Weight: 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := subGroupFold(t)
			fact, err := domain.DecideSubGroupWeight(f.State, tt.target, tt.member, tt.weight)
			if g, _ := f.Group(11); g.SubGroups[0].Weight != 5 || g.SubGroups[1].Weight != 2 {
				t.Fatalf("deciding changed the members: %v", g.SubGroups)
			}
			if tt.fields != nil {
				wantFields(t, err, tt.fields...)
				return
			}
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if fact.GroupID != tt.target || !slices.Equal(fact.SubGroups, tt.want) {
				t.Fatalf("fact = %+v, want %v", fact, tt.want)
			}
			f.apply(fact)
			if p := f.ParentsOf(tt.member); !slices.Equal(p, []domain.SubGroup{{GroupID: tt.target, Weight: tt.weight}}) {
				t.Errorf("ParentsOf = %v", p)
			}
		})
	}
}

func TestDecideRemoveSubGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target uint64
		member uint64
		code   domain.Code
		want   []domain.SubGroup
	}{
		{name: "missing target", target: 99, member: 3, code: domain.ENOTFOUND},
		{name: "standard target", target: 3, member: 4, code: domain.EINVALID},
		{name: "missing link", target: 11, member: 4, code: domain.ENOTFOUND},
		{name: "first", target: 11, member: 3, want: []domain.SubGroup{{GroupID: 6, Weight: 2}}},
		{name: "last", target: 11, member: 6, want: []domain.SubGroup{{GroupID: 3, Weight: 5}}},
		{name: "only", target: 12, member: 7, want: []domain.SubGroup{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := subGroupFold(t)
			fact, err := domain.DecideRemoveSubGroup(f.State, tt.target, tt.member)
			if g, _ := f.Group(11); len(g.SubGroups) != 2 || g.SubGroups[0].GroupID != 3 {
				t.Fatalf("deciding changed the members: %v", g.SubGroups)
			}
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if fact.GroupID != tt.target || !slices.Equal(fact.SubGroups, tt.want) {
				t.Fatalf("fact = %+v, want %v", fact, tt.want)
			}
			f.apply(fact)
			if p := f.ParentsOf(tt.member); len(p) != 0 {
				t.Errorf("ParentsOf = %v", p)
			}
			if g, _ := f.Group(tt.target); !slices.Equal(g.SubGroups, tt.want) {
				t.Errorf("members after apply = %v", g.SubGroups)
			}
		})
	}
}

func TestDecideGroupOrderOfChecks(t *testing.T) {
	t.Parallel()
	f := newFold()
	f.create(t, stdBody("taken", "openai"))
	agg := f.create(t, aggBody("agg", "openai"))

	// A body that is wrong and also names a taken group is answered as wrong input first.
	_, err := domain.DecideCreateGroup(f.State, gin(t, `{"name":"taken","channel_type":"nope","test_model":"m","upstreams":[{"url":"https://u.example","weight":1}]}`))
	wantCode(t, err, domain.EINVALID)
	_, err = domain.DecideCreateGroup(f.State, gin(t, stdBody("taken", "openai")))
	wantCode(t, err, domain.EDUPLICATE)
	_, err = domain.DecideUpdateGroup(f.State, agg.ID, gin(t, `{"name":"taken","description":"`+strings.Repeat("x", 600)+`"}`))
	wantCode(t, err, domain.EINVALID)
	_, err = domain.DecideUpdateGroup(f.State, agg.ID, gin(t, `{"name":"taken"}`))
	wantCode(t, err, domain.EDUPLICATE)

	// An aggregate's test model stays "-" whatever an update says.
	up, err := domain.DecideUpdateGroup(f.State, agg.ID, gin(t, `{"test_model":"gpt-4o"}`))
	if err != nil || up.Group.TestModel != "-" {
		t.Fatalf("aggregate test_model after update = %q, %v; want \"-\"", up.Group.TestModel, err)
	}
}

func TestParentsOfIsOrdered(t *testing.T) {
	t.Parallel()
	f := newFold()
	m := f.create(t, stdBody("member", "openai"))
	var aggs []uint64
	for _, name := range []string{"a1", "a2", "a3", "a4", "a5"} {
		a := f.create(t, aggBody(name, "openai"))
		f.link(a.ID, m.ID)
		aggs = append(aggs, a.ID)
	}
	for i := 0; i < 20; i++ {
		var got []uint64
		for _, p := range f.ParentsOf(m.ID) {
			got = append(got, p.GroupID)
		}
		if !slices.Equal(got, aggs) {
			t.Fatalf("ParentsOf = %v, want %v in id order", got, aggs)
		}
	}
}

func TestDecideSettingsChangedIsAList(t *testing.T) {
	t.Parallel()
	f := newFold()
	ch, ok, err := domain.DecideSettings(f.State, nil)
	if err != nil || !ok || ch.Changed == nil {
		t.Fatalf("first settings decision on an unseeded log = %+v, %v, %v; want a record with an empty list", ch, ok, err)
	}
}
