package events

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"gpt-load/domain"
)

// AuditQuery selects events of the audit trail.
type AuditQuery struct {
	GroupID uint64   // only events about this group (0: every event)
	Types   []string // only these registered event names (empty: every type)
	Offset  int      // events to skip, newest first
	Limit   int      // at most this many events
}

// AuditPage is one page of the audit trail, newest event first.
type AuditPage struct {
	Events []Event
	Total  int // events matching the query in the whole log
}

// Audit reads the event log for the audit trail, newest first, without a consumer and
// without reading the whole log per page:
//
//   - every event type has its own subject (gl.keys.<group>.keys_added, ...), so a query
//     becomes a few subject filters; their sizes come from the stream's subject counts,
//     and their newest events are found with direct gets that walk backwards from the end
//     of the log in windows of growing size (the server skips what does not match);
//   - group configuration events (gl.groups.*) do not name their group in the subject;
//     Audit keeps a small index of them (sequence, type, groups concerned), extended
//     incrementally, to filter them by group.
//
// The cost of a page is about one direct get per event on the page or skipped before it,
// plus one per window searched; it does not grow with the length of the log.
type Audit struct {
	s *Store

	mu      sync.Mutex
	indexed uint64 // the group-configuration index covers the log up to this sequence
	index   []groupEntry
}

type groupEntry struct {
	seq    uint64
	typ    string
	groups []uint64
}

// NewAudit returns an audit reader of the store's log.
func NewAudit(s *Store) *Audit {
	if s == nil {
		panic("events: nil store")
	}
	return &Audit{s: s}
}

// kindFamily is the aggregate kind the facts of a registered type belong to.
func kindFamily(k *kind) domain.AggregateKind {
	return domain.AggregateOf(reflect.Zero(k.typ).Interface().(domain.Fact)).Kind
}

// auditSource yields matching events newest first.
type auditSource interface {
	count(ctx context.Context) (int, error)
	next(ctx context.Context) (*jetstream.RawStreamMsg, error) // nil at the end
}

// Page returns the events matching q, newest first.
func (a *Audit) Page(ctx context.Context, q AuditQuery) (AuditPage, error) {
	if q.Limit <= 0 || q.Offset < 0 {
		return AuditPage{}, nil
	}
	info, err := a.s.stream.Info(ctx)
	if err != nil {
		return AuditPage{}, fmt.Errorf("audit: stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	if last == 0 || info.State.Msgs == 0 {
		return AuditPage{}, nil
	}
	sources, err := a.sources(ctx, q, first, last, info.State.Msgs)
	if err != nil {
		return AuditPage{}, err
	}
	page := AuditPage{}
	for _, src := range sources {
		n, err := src.count(ctx)
		if err != nil {
			return AuditPage{}, err
		}
		page.Total += n
	}
	heads := make([]*jetstream.RawStreamMsg, len(sources))
	for i, src := range sources {
		if heads[i], err = src.next(ctx); err != nil {
			return AuditPage{}, err
		}
	}
	for skipped := 0; len(page.Events) < q.Limit; {
		best := -1
		for i, h := range heads {
			if h != nil && (best < 0 || h.Sequence > heads[best].Sequence) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		m := heads[best]
		if heads[best], err = sources[best].next(ctx); err != nil {
			return AuditPage{}, err
		}
		if isRebase(m.Subject) {
			continue // the state as a whole, written by migrate-keys: not an event
		}
		if skipped < q.Offset {
			skipped++
			continue
		}
		ev, err := a.s.codec.decode(m.Subject, m.Header, m.Data, m.Sequence)
		if err != nil {
			return AuditPage{}, err
		}
		page.Events = append(page.Events, ev)
	}
	return page, nil
}

// sources turns a query into disjoint sources.
func (a *Audit) sources(ctx context.Context, q AuditQuery, first, last, msgs uint64) ([]auditSource, error) {
	reg := a.s.codec.reg
	if len(q.Types) == 0 {
		if q.GroupID == 0 {
			// Everything: the log itself.
			return []auditSource{&backward{st: a.s.stream, first: first, hi: last, total: int(msgs)}}, nil
		}
		// Everything about one group: its keys and health subjects in one filter, and its
		// configuration events from the index.
		var groupTypes []string
		for _, name := range Names() {
			if kindFamily(reg.byName[name]) == domain.AggGroups {
				groupTypes = append(groupTypes, name)
			}
		}
		seqs, err := a.groupEvents(ctx, q.GroupID, groupTypes, last)
		if err != nil {
			return nil, err
		}
		filter := "gl.*." + strconv.FormatUint(q.GroupID, 10) + ".>"
		return []auditSource{&backward{st: a.s.stream, filter: filter, first: first, hi: last}, &listed{st: a.s.stream, seqs: seqs}}, nil
	}
	types := q.Types
	group := "*"
	if q.GroupID != 0 {
		group = strconv.FormatUint(q.GroupID, 10)
	}
	var out []auditSource
	var groupTypes []string
	seen := map[string]bool{}
	for _, name := range types {
		k, ok := reg.byName[name]
		if !ok {
			return nil, domain.Invalid(domain.FieldError{Field: "type", Message: fmt.Sprintf("unknown event type %q", name)})
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		tok := strings.ReplaceAll(name, ".", "_")
		var filter string
		switch kindFamily(k) {
		case domain.AggSettings:
			if q.GroupID != 0 {
				continue // system-wide, never about one group
			}
			filter = "gl.settings." + tok
		case domain.AggGroups:
			if q.GroupID != 0 {
				groupTypes = append(groupTypes, name)
				continue
			}
			filter = "gl.groups." + tok
		case domain.AggKeys:
			filter = "gl.keys." + group + "." + tok
		case domain.AggHealth:
			filter = "gl.health." + group + "." + tok
		case domain.AggProxyKeys:
			if q.GroupID != 0 {
				continue // not about one group
			}
			filter = "gl.proxykeys." + tok
		}
		out = append(out, &backward{st: a.s.stream, filter: filter, first: first, hi: last})
	}
	if len(groupTypes) > 0 {
		seqs, err := a.groupEvents(ctx, q.GroupID, groupTypes, last)
		if err != nil {
			return nil, err
		}
		out = append(out, &listed{st: a.s.stream, seqs: seqs})
	}
	return out, nil
}

// groupEvents lists, newest first, the sequences (up to last) of group configuration
// events of the given types that concern group id.
func (a *Audit) groupEvents(ctx context.Context, id uint64, types []string, last uint64) ([]uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for seq := a.indexed + 1; seq <= last; {
		m, err := a.s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("gl.groups.>"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("audit: index group events: %w", err)
		}
		if m.Sequence > last {
			break
		}
		ev, err := a.s.codec.decode(m.Subject, m.Header, m.Data, m.Sequence)
		if err != nil {
			return nil, err
		}
		a.index = append(a.index, groupEntry{seq: m.Sequence, typ: ev.Type, groups: GroupsOf(ev.Fact)})
		a.indexed = m.Sequence
		seq = m.Sequence + 1
	}
	a.indexed = max(a.indexed, last)
	var out []uint64
	for i := len(a.index) - 1; i >= 0; i-- {
		e := &a.index[i]
		if e.seq <= last && slices.Contains(types, e.typ) && slices.Contains(e.groups, id) {
			out = append(out, e.seq)
		}
	}
	return out, nil
}

// GroupsOf lists the groups a fact concerns.
func GroupsOf(f domain.Fact) []uint64 {
	switch f := f.(type) {
	case domain.GroupCreated:
		return []uint64{f.Group.ID}
	case domain.GroupUpdated:
		return []uint64{f.Group.ID}
	case domain.GroupImported:
		ids := []uint64{f.Group.ID}
		for _, sg := range f.Group.SubGroups {
			ids = append(ids, sg.GroupID)
		}
		return ids
	case domain.GroupDeleted:
		return []uint64{f.GroupID}
	case domain.GroupsReordered:
		ids := make([]uint64, len(f.Items))
		for i, it := range f.Items {
			ids[i] = it.GroupID
		}
		return ids
	case domain.SubGroupsChanged:
		ids := []uint64{f.GroupID}
		for _, sg := range f.SubGroups {
			ids = append(ids, sg.GroupID)
		}
		return ids
	case domain.SettingsChanged:
		return nil
	}
	if a := domain.AggregateOf(f); a.Kind == domain.AggKeys || a.Kind == domain.AggHealth {
		return []uint64{a.GroupID}
	}
	return nil
}

// maxWindow bounds the sequence window one backward step searches.
const maxWindow = 1 << 20

// backward walks the events of one subject filter ("" for all) from the end of the log.
type backward struct {
	st     jetstream.Stream
	filter string
	first  uint64
	hi     uint64 // the newest sequence not searched yet; below first when exhausted
	window uint64
	total  int // known count (unfiltered), or -1
	buf    []*jetstream.RawStreamMsg
}

func (b *backward) count(ctx context.Context) (int, error) {
	if b.filter == "" {
		return b.total, nil
	}
	info, err := b.st.Info(ctx, jetstream.WithSubjectFilter(b.filter))
	if err != nil {
		return 0, fmt.Errorf("audit: count %s: %w", b.filter, err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

func (b *backward) next(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	for len(b.buf) == 0 {
		if b.hi < b.first || b.hi == 0 {
			return nil, nil
		}
		if b.filter == "" {
			seq := b.hi
			b.hi--
			m, err := b.st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("audit: read event %d: %w", seq, err)
			}
			return m, nil
		}
		if b.window == 0 {
			b.window = 64
		}
		lo := b.first
		if b.hi-b.first+1 > b.window {
			lo = b.hi - b.window + 1
		}
		for seq := lo; seq <= b.hi; {
			m, err := b.st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(b.filter))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("audit: read %s from %d: %w", b.filter, seq, err)
			}
			if m.Sequence > b.hi {
				break
			}
			b.buf = append(b.buf, m)
			seq = m.Sequence + 1
		}
		slices.Reverse(b.buf)
		b.hi = lo - 1
		b.window = min(b.window*2, maxWindow)
	}
	m := b.buf[0]
	b.buf = b.buf[1:]
	return m, nil
}

// listed yields the events at known sequences, newest first.
type listed struct {
	st   jetstream.Stream
	seqs []uint64
}

func (l *listed) count(context.Context) (int, error) { return len(l.seqs), nil }

func (l *listed) next(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	for len(l.seqs) > 0 {
		seq := l.seqs[0]
		l.seqs = l.seqs[1:]
		m, err := l.st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("audit: read event %d: %w", seq, err)
		}
		return m, nil
	}
	return nil, nil
}
