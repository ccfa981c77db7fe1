package gptload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"gpt-load/domain"
	"gpt-load/events"
)

// StateReader gives consistent reads of the projected state.
type StateReader interface {
	Read(f func(s *domain.State))
}

// Target is the node an import writes into.
type Target struct {
	Commands *events.Commands
	State    StateReader    // the projected state the import decides on
	Cipher   *events.Cipher // this node's: hashes key values, seals those of request logs
	DB       *bun.DB        // the node's SQL store; only Options.WithLogs needs it
	Actor    string         // recorded in the events; events.ActorAdmin when empty
}

// Options choose what an import does.
type Options struct {
	// EncryptionKey is the ENCRYPTION_KEY gpt-load ran with; empty when it had none.
	EncryptionKey string
	// DryRun reads and checks everything and writes nothing.
	DryRun bool
	// Overwrite replaces groups whose names are taken here; without it they are left
	// alone.
	Overwrite bool
	// WithLogs also brings request logs, hourly stats and key usage into the SQL store.
	WithLogs bool
}

// Progress is told how many keys are done out of the total.
type Progress func(done, total int)

// Import is a checked import, ready to run: the source's keys open with the key given, its
// settings and groups pass our rules.
type Import struct {
	src    *Source
	t      Target
	o      Options
	theirs *events.Cipher

	settings map[string]json.RawMessage // changed from gpt-load's defaults, in our types
	unknown  []string                   // gpt-load settings this node has no use for
	groups   []srcGroup
	subs     map[uint64][]srcSub
	counts   map[uint64]map[string]int
	plan     map[uint64]domain.ImportedGroupReport
	total    int // keys of the groups that will be imported
	logs     int
	stats    int
}

// sampleSize is how many keys the encryption check opens before anything is written.
const sampleSize = 50

// Prepare reads the source and checks it before anything is written: a sample of its keys
// must open with opts.EncryptionKey (or be in clear without one), every setting and group
// must pass our rules. The errors say what is wrong.
func Prepare(ctx context.Context, src *Source, t Target, o Options) (*Import, error) {
	if t.Commands == nil || t.State == nil || t.Cipher == nil {
		panic("gptload: the target needs Commands, State and Cipher")
	}
	if o.WithLogs && t.DB == nil {
		return nil, errors.New("importing request logs needs the node's SQL database")
	}
	if t.Actor == "" {
		t.Actor = events.ActorAdmin
	}
	im := &Import{src: src, t: t, o: o, subs: map[uint64][]srcSub{}, plan: map[uint64]domain.ImportedGroupReport{}}
	var err error
	if im.theirs, err = events.NewCipher(o.EncryptionKey); err != nil {
		return nil, err
	}
	sample, err := src.sampleKeys(ctx, sampleSize)
	if err != nil {
		return nil, err
	}
	if err := checkSample(sample, im.theirs); err != nil {
		return nil, err
	}
	if err := im.readSettings(ctx); err != nil {
		return nil, err
	}
	if im.groups, err = src.groups(ctx); err != nil {
		return nil, err
	}
	subs, err := src.subGroups(ctx)
	if err != nil {
		return nil, err
	}
	for _, sg := range subs {
		im.subs[sg.GroupID] = append(im.subs[sg.GroupID], sg)
	}
	if im.counts, err = src.keyCounts(ctx); err != nil {
		return nil, err
	}
	var problems []string
	t.State.Read(func(s *domain.State) {
		for _, g := range im.groups {
			_, rep, err := domain.DecideImportGroup(s, groupInput(g), domain.GroupImport{ID: g.ID}, o.Overwrite)
			if err != nil {
				problems = append(problems, fmt.Sprintf("group %q (id %d): %v", g.Name, g.ID, err))
				continue
			}
			im.plan[g.ID] = rep
			if rep.Outcome != domain.ImportExists {
				for _, n := range im.counts[g.ID] {
					im.total += n
				}
			}
		}
	})
	if len(problems) > 0 {
		return nil, fmt.Errorf("these gpt-load groups do not pass our rules, nothing was imported:\n  %s", strings.Join(problems, "\n  "))
	}
	if o.WithLogs {
		if im.logs, err = src.count(ctx, "request_logs"); err != nil {
			return nil, err
		}
		if im.stats, err = src.count(ctx, "group_hourly_stats"); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// TotalKeys is how many keys the import brings (those of groups left alone aside).
func (im *Import) TotalKeys() int { return im.total }

// Encryption-check errors. They are EINVALID: the input is wrong, not the node.
var (
	ErrKeyMissing   = domain.Errorf(domain.EINVALID, "the keys of this gpt-load database are encrypted: give the ENCRYPTION_KEY gpt-load ran with (nothing was imported)")
	ErrKeyWrong     = domain.Errorf(domain.EINVALID, "the encryption key given does not open the keys of this gpt-load database: it is not the ENCRYPTION_KEY gpt-load ran with (nothing was imported)")
	ErrKeyNotNeeded = domain.Errorf(domain.EINVALID, "the keys of this gpt-load database are not encrypted: import it without an encryption key (nothing was imported)")
)

// checkSample tells whether the sample of stored keys opens with theirs. gpt-load stores
// key_hash beside each value: SHA-256 of the key in clear without ENCRYPTION_KEY, so a
// stored value whose SHA-256 is its hash is a key in clear.
func checkSample(sample []srcKey, theirs *events.Cipher) error {
	for _, k := range sample {
		sum := sha256.Sum256([]byte(k.Value))
		inClear := k.Hash != "" && strings.EqualFold(hex.EncodeToString(sum[:]), k.Hash)
		if !theirs.Enabled() {
			if inClear || (k.Hash == "" && !looksSealed(k.Value)) {
				continue
			}
			return ErrKeyMissing
		}
		if _, err := theirs.Decrypt(k.Value); err != nil {
			if inClear || !looksSealed(k.Value) {
				return ErrKeyNotNeeded
			}
			return ErrKeyWrong
		}
	}
	return nil
}

// looksSealed reports whether v has the form of a value gpt-load encrypted: hex of a
// 12-byte nonce, the ciphertext and a 16-byte tag.
func looksSealed(v string) bool {
	if len(v) < 2*(12+16)+2 || len(v)%2 != 0 {
		return false
	}
	_, err := hex.DecodeString(v)
	return err == nil
}

// gptloadDefaults are gpt-load 1.x's defaults of its system settings: a setting with its
// default value is not imported, so that ours apply (failover_status_codes differs on
// purpose, see README).
var gptloadDefaults = map[string]string{
	"app_url":                            "http://localhost:3001",
	"proxy_keys":                         "",
	"request_log_retention_days":         "7",
	"request_log_write_interval_minutes": "1",
	"enable_request_body_logging":        "false",
	"request_timeout":                    "600",
	"connect_timeout":                    "15",
	"idle_conn_timeout":                  "120",
	"response_header_timeout":            "600",
	"max_idle_conns":                     "100",
	"max_idle_conns_per_host":            "50",
	"proxy_url":                          "",
	"max_retries":                        "3",
	"blacklist_threshold":                "3",
	"failover_status_codes":              "400-403,405-999",
	"key_validation_interval_minutes":    "60",
	"key_validation_concurrency":         "10",
	"key_validation_timeout_seconds":     "20",
}

// readSettings keeps the settings gpt-load changed from its defaults, as JSON values of
// our types, and checks them against our rules.
func (im *Import) readSettings(ctx context.Context) error {
	all, err := im.src.settings(ctx)
	if err != nil {
		return err
	}
	im.settings = map[string]json.RawMessage{}
	for _, key := range slices.Sorted(func(yield func(string) bool) {
		for k := range all {
			if !yield(k) {
				return
			}
		}
	}) {
		v := strings.TrimSpace(all[key])
		if def, ok := gptloadDefaults[key]; ok && v == def {
			continue
		}
		d, ok := domain.LookupSetting(key)
		if !ok {
			im.unknown = append(im.unknown, key)
			continue
		}
		var raw []byte
		switch d.Type {
		case domain.SettingInt:
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("gpt-load setting %s: %q is not a whole number (nothing was imported)", key, v)
			}
			raw = []byte(strconv.Itoa(n))
		case domain.SettingBool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("gpt-load setting %s: %q is not true or false (nothing was imported)", key, v)
			}
			raw = []byte(strconv.FormatBool(b))
		default:
			if v == "" && d.Required {
				continue // an empty required setting keeps ours
			}
			raw, _ = json.Marshal(v)
		}
		im.settings[key] = raw
	}
	var verr error
	im.t.State.Read(func(s *domain.State) { _, verr = s.Settings.Apply(im.settings) })
	if verr != nil {
		return fmt.Errorf("gpt-load settings do not pass our rules (nothing was imported): %w", verr)
	}
	return nil
}

// changedSettings are the imported settings whose values differ from ours now.
func (im *Import) changedSettings() []string {
	var out []string
	im.t.State.Read(func(s *domain.State) {
		next, err := s.Settings.Apply(im.settings)
		if err != nil {
			return
		}
		before, after := s.Settings.Values(), next.Values()
		for _, d := range domain.SettingDefs() {
			if before[d.Key] != after[d.Key] {
				out = append(out, d.Key)
			}
		}
	})
	return out
}

// groupInput reads a gpt-load group as a create body. Unset JSON columns are the text
// "null" (or SQL NULL, or {}), which our rules read as absent.
func groupInput(g srcGroup) domain.GroupInput {
	str := func(s string) *string { return &s }
	typ := g.Type
	if typ == "" {
		typ = string(domain.GroupStandard)
	}
	in := domain.GroupInput{
		Name: str(g.Name), DisplayName: str(g.DisplayName), Description: str(g.Description), GroupType: str(typ),
		ChannelType: str(g.ChannelType), Sort: &g.Sort, TestModel: str(g.TestModel),
		ValidationEndpoint: str(g.ValidationEndpoint), ModelRedirectStrict: &g.ModelRedirectStrict,
		ProxyKeys: str(g.ProxyKeys), Upstreams: jsonCol(g.Upstreams), ParamOverrides: jsonCol(g.ParamOverrides),
		Config: jsonCol(g.Config), HeaderRules: jsonCol(g.HeaderRules), ModelRedirectRules: jsonCol(g.ModelRedirectRules),
	}
	if typ == string(domain.GroupAggregate) {
		in.Upstreams = nil
	}
	return in
}

func jsonCol(b []byte) json.RawMessage {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

// Run carries out the import: settings, groups (standard ones first, then aggregates with
// their members), keys in batches, then request logs when asked. A dry run reports what
// would be done and writes nothing.
func (im *Import) Run(ctx context.Context, progress Progress) (Summary, error) {
	sum := Summary{DryRun: im.o.DryRun, Unknown: im.unknown, Settings: im.changedSettings()}
	if sum.Settings == nil {
		sum.Settings = []string{}
	}
	if im.o.DryRun {
		return im.dryRun(sum), nil
	}
	if len(sum.Settings) > 0 {
		changes := make(map[string]json.RawMessage, len(sum.Settings))
		for _, k := range sum.Settings {
			changes[k] = im.settings[k]
		}
		if err := im.t.Commands.UpdateSettings(ctx, im.t.Actor, changes); err != nil {
			return sum, fmt.Errorf("import settings: %w", err)
		}
	}
	ids := map[uint64]uint64{} // gpt-load group id → ours
	ordered := slices.Clone(im.groups)
	slices.SortStableFunc(ordered, func(a, b srcGroup) int {
		return boolInt(a.Type == string(domain.GroupAggregate)) - boolInt(b.Type == string(domain.GroupAggregate))
	})
	for _, g := range ordered {
		imp := domain.GroupImport{ID: g.ID, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt, LastValidatedAt: g.LastValidatedAt}
		for _, sg := range im.subs[g.ID] {
			if id, ok := ids[sg.SubGroupID]; ok {
				imp.SubGroups = append(imp.SubGroups, domain.SubGroup{GroupID: id, Weight: sg.Weight})
			} else {
				sum.MissingMembers++
			}
		}
		rep, err := im.t.Commands.ImportGroup(ctx, im.t.Actor, groupInput(g), imp, im.o.Overwrite)
		if err != nil {
			return sum, fmt.Errorf("import group %q: %w", g.Name, err)
		}
		ids[g.ID] = rep.ID
		sum.Groups = append(sum.Groups, rep)
	}
	imported := map[uint64]domain.ImportedGroupReport{}
	for _, rep := range sum.Groups {
		if rep.Outcome == domain.ImportExists {
			for _, n := range im.counts[rep.SourceID] {
				sum.Keys.LeftAlone += n
			}
			continue
		}
		imported[rep.SourceID] = rep
	}
	usage, err := im.importKeys(ctx, imported, &sum.Keys, progress)
	if err != nil {
		return sum, err
	}
	if im.o.WithLogs {
		logs, err := im.importLogs(ctx, ids, usage)
		sum.Logs = &logs
		if err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// unixNano is t in Unix nanoseconds, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (im *Import) dryRun(sum Summary) Summary {
	for _, g := range im.groups {
		rep := im.plan[g.ID]
		sum.Groups = append(sum.Groups, rep)
		for st, n := range im.counts[g.ID] {
			switch {
			case rep.Outcome == domain.ImportExists:
				sum.Keys.LeftAlone += n
			case st == "active":
				sum.Keys.Active += n
			default:
				sum.Keys.Invalid += n
			}
		}
	}
	if im.o.WithLogs {
		sum.Logs = &LogSummary{RequestLogs: im.logs, HourlyStats: im.stats}
	}
	return sum
}

// Batch bounds of one keys.imported event: the log takes messages up to 1 MiB; a sealed
// value is hex of nonce, value and tag, a note may need escaping.
const (
	pageKeys      = 5000
	maxBatchBytes = 384 << 10
)

// keyUse is the usage gpt-load counted for a key, for key_usage.
type keyUse struct {
	groupID uint64
	hash    domain.KeyHash
	srcID   uint64
	count   int64
	last    srcKey
}

// groupBatch is a batch of keys of one group.
type groupBatch struct {
	rep  domain.ImportedGroupReport
	keys []domain.ImportedKey
}

// appenders is how many groups' batches are appended at once: each append waits for the
// log and for the projection to apply it, and batches of different groups do not wait for
// each other (each group's batches still go in order, by one appender).
const appenders = 4

// importKeys brings the keys of the imported groups in events that fit the log. The source
// is read, opened and hashed in a goroutine of its own, ahead of the appends.
func (im *Import) importKeys(ctx context.Context, groups map[uint64]domain.ImportedGroupReport, ks *KeySummary, progress Progress) ([]keyUse, error) {
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan groupBatch, appenders)
	var usage []keyUse
	g.Go(func() error {
		defer close(batches)
		return im.readKeys(ctx, groups, batches, &usage)
	})
	var (
		mu   sync.Mutex
		done int
	)
	queues := make([]chan groupBatch, appenders)
	for i := range queues {
		q := make(chan groupBatch, 2)
		queues[i] = q
		g.Go(func() error {
			for b := range q {
				r, err := im.t.Commands.ImportKeys(ctx, im.t.Actor, b.rep.ID, b.keys)
				if err != nil {
					for range q {
					}
					return fmt.Errorf("import keys of group %q: %w", b.rep.Name, err)
				}
				mu.Lock()
				ks.Active += r.Active
				ks.Invalid += r.Invalid
				ks.Existing += r.Existing
				ks.Renumbered += r.Renumbered
				done += len(b.keys)
				if progress != nil {
					progress(done, im.total)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	g.Go(func() error {
		defer func() {
			for _, q := range queues {
				close(q)
			}
		}()
		for b := range batches {
			select {
			case queues[b.rep.ID%appenders] <- b:
			case <-ctx.Done():
				for range batches {
				}
				return ctx.Err()
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return usage, nil
}

// maxPending bounds the keys readKeys holds in unfinished batches before it sends them.
const maxPending = 100_000

// readKeys reads api_keys once in id order (a straight read of the table, no index), opens
// each key of an imported group with gpt-load's key, hashes it with ours, and sends each
// group's keys in id order, in batches of at most MaxKeysPerEvent keys and maxBatchBytes
// of estimated payload.
func (im *Import) readKeys(ctx context.Context, groups map[uint64]domain.ImportedGroupReport, out chan<- groupBatch, usage *[]keyUse) error {
	type pending struct {
		keys []domain.ImportedKey
		size int
	}
	open := map[uint64]*pending{}
	held := 0
	send := func(src uint64) error {
		p := open[src]
		if p == nil || len(p.keys) == 0 {
			return nil
		}
		select {
		case out <- groupBatch{rep: groups[src], keys: p.keys}:
		case <-ctx.Done():
			return ctx.Err()
		}
		held -= len(p.keys)
		open[src] = &pending{keys: make([]domain.ImportedKey, 0, min(domain.MaxKeysPerEvent, 64))}
		return nil
	}
	flushAll := func() error {
		for _, src := range slices.Sorted(maps.Keys(open)) {
			if err := send(src); err != nil {
				return err
			}
		}
		return nil
	}
	for after := uint64(0); ; {
		page, err := im.src.keyPage(ctx, after, pageKeys)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].ID
		for _, k := range page {
			rep, ok := groups[k.GroupID]
			if !ok {
				continue
			}
			v, err := im.theirs.Decrypt(k.Value)
			if err != nil {
				return fmt.Errorf("key %d of group %q does not open with the encryption key given (the keys before it are imported): %w", k.ID, rep.Name, err)
			}
			status := "invalid"
			if k.Status == "active" {
				status = "active"
			}
			ik := domain.ImportedKey{ID: k.ID, Value: v, Hash: im.t.Cipher.Hash(v), Status: status, Notes: k.Notes,
				FailureCount: uint32(max(0, min(k.FailureCount, 1<<31))), CreatedAt: unixNano(k.CreatedAt), UpdatedAt: unixNano(k.UpdatedAt)}
			if k.RequestCount > 0 || !k.LastUsedAt.IsZero() {
				*usage = append(*usage, keyUse{groupID: rep.ID, hash: ik.Hash, srcID: k.ID, count: k.RequestCount, last: k})
			}
			p := open[k.GroupID]
			if p == nil {
				p = &pending{}
				open[k.GroupID] = p
			}
			n := 2*(len(v)+28) + 2*len(k.Notes) + 256
			if len(p.keys) == domain.MaxKeysPerEvent || (len(p.keys) > 0 && p.size+n > maxBatchBytes) {
				if err := send(k.GroupID); err != nil {
					return err
				}
				p = open[k.GroupID]
			}
			p.keys = append(p.keys, ik)
			p.size += n
			if held++; held > maxPending {
				if err := flushAll(); err != nil {
					return err
				}
			}
		}
		if len(page) < pageKeys {
			break
		}
	}
	return flushAll()
}

// Summary is what an import did (or, dry, would do).
type Summary struct {
	DryRun bool `json:"dry_run"`
	// Settings lists the settings the import changed here.
	Settings []string `json:"settings"`
	// Unknown lists gpt-load settings this node does not have.
	Unknown []string                     `json:"settings_not_imported,omitempty"`
	Groups  []domain.ImportedGroupReport `json:"groups"`
	// MissingMembers counts aggregate members that were not in the source's groups.
	MissingMembers int         `json:"missing_members,omitempty"`
	Keys           KeySummary  `json:"keys"`
	Logs           *LogSummary `json:"logs,omitempty"`
}

// KeySummary counts keys by what happened to them.
type KeySummary struct {
	Active     int `json:"active"`               // imported with status active
	Invalid    int `json:"invalid"`              // imported with status invalid
	Existing   int `json:"already_here"`         // the group here held the key already
	Renumbered int `json:"renumbered"`           // the id was taken here: a fresh one
	LeftAlone  int `json:"in_groups_left_alone"` // keys of groups that exist here (no overwrite)
}

// LogSummary counts what came into the SQL store.
type LogSummary struct {
	RequestLogs int `json:"request_logs"`      // rows written (a second run writes none)
	Read        int `json:"request_logs_read"` // rows read from gpt-load
	HourlyStats int `json:"hourly_stats"`
	KeyUsage    int `json:"key_usage"`
}

// Imported is the number of keys brought in.
func (k KeySummary) Imported() int { return k.Active + k.Invalid }

// Empty reports that the import changed (or would change) nothing.
func (s Summary) Empty() bool {
	for _, g := range s.Groups {
		if g.Outcome != domain.ImportExists {
			return false
		}
	}
	if len(s.Settings) > 0 || s.Keys.Imported() > 0 {
		return false
	}
	return s.Logs == nil || (s.Logs.RequestLogs == 0 && s.Logs.HourlyStats == 0 && s.Logs.KeyUsage == 0)
}
