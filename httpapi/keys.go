package httpapi

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog/hlog"

	"gpt-load/domain"
	"gpt-load/events"
)

// keyJSON is the key object of API.md 3.1, with our additions cooldown_until,
// last_error and disabled.
type keyJSON struct {
	ID            uint64     `json:"id"`
	KeyValue      string     `json:"key_value"`
	KeyHash       string     `json:"key_hash"`
	GroupID       uint64     `json:"group_id"`
	Status        string     `json:"status"`
	Notes         string     `json:"notes"`
	RequestCount  int64      `json:"request_count"` // successful requests, from key_usage
	FailureCount  uint32     `json:"failure_count"`
	LastUsedAt    *time.Time `json:"last_used_at"` // the latest successful request, from key_usage
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	CooldownUntil *time.Time `json:"cooldown_until"` // null when the key is not resting
	LastError     string     `json:"last_error"`
	Disabled      bool       `json:"disabled"`
}

func keyOut(k *domain.Key, now int64) keyJSON {
	j := keyJSON{
		ID: k.ID, KeyValue: k.Value, KeyHash: k.Hash.String(), GroupID: k.GroupID,
		Status: k.Status.String(), Notes: k.Notes, FailureCount: k.FailureCount,
		CreatedAt: time.Unix(0, k.CreatedAt), UpdatedAt: time.Unix(0, k.UpdatedAt),
		LastError: k.LastError, Disabled: k.Disabled,
	}
	if k.CooldownUntil > now {
		j.CooldownUntil = optNanos(k.CooldownUntil)
	}
	return j
}

// keySearch matches keys by the text an admin can see or copy without the key itself: a
// prefix of the key hash (hex, any case) or a part of the masked value ("sk-a****wxyz",
// domain.MaskKey).
type keySearch struct {
	text    string
	nibbles []byte // text as hex digits; nil when it is not hex or longer than a hash
	// aligns are the positions in a 12-byte masked value where text may start: those
	// where its characters over the four stars are stars. Checking a key compares only
	// the characters that fall on its first or last four.
	aligns []int
	// short tells whether text is found in the mask of keys of 8 bytes or less ("****").
	short bool
}

// maskedLen is the length of a masked key longer than 8 bytes.
const maskedLen = 12

func newKeySearch(q string) keySearch {
	q = strings.TrimSpace(q)
	s := keySearch{text: q, short: len(q) <= 4 && strings.Trim(q, "*") == ""}
	for at := 0; at+len(q) <= maskedLen; at++ {
		fits := true
		for j := 0; j < len(q) && fits; j++ {
			if p := at + j; p >= 4 && p < 8 {
				fits = q[j] == '*'
			}
		}
		if fits {
			s.aligns = append(s.aligns, at)
		}
	}
	if q == "" || len(q) > 64 {
		return s
	}
	nib := make([]byte, len(q))
	for i := 0; i < len(q); i++ {
		switch c := q[i]; {
		case c >= '0' && c <= '9':
			nib[i] = c - '0'
		case c >= 'a' && c <= 'f':
			nib[i] = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			nib[i] = c - 'A' + 10
		default:
			return s
		}
	}
	s.nibbles = nib
	return s
}

func (s *keySearch) empty() bool { return s.text == "" }

func (s *keySearch) match(k *domain.Key) bool {
	if s.text == "" {
		return true
	}
	if s.nibbles != nil && hashHasPrefix(&k.Hash, s.nibbles) {
		return true
	}
	return s.maskedContains(k.Value)
}

func hashHasPrefix(h *domain.KeyHash, nibbles []byte) bool {
	for i, n := range nibbles {
		b := h[i/2]
		if i%2 == 0 {
			b >>= 4
		}
		if b&0x0f != n {
			return false
		}
	}
	return true
}

// maskedContains reports whether domain.MaskKey(v) contains the text, without building
// the mask.
func (s *keySearch) maskedContains(v string) bool {
	if len(v) <= 8 {
		return s.short
	}
	q := s.text
	for _, at := range s.aligns {
		fits := true
		for j := 0; j < len(q) && fits; j++ {
			switch p := at + j; {
			case p < 4:
				fits = v[p] == q[j]
			case p >= 8:
				fits = v[len(v)-maskedLen+p] == q[j]
			}
		}
		if fits {
			return true
		}
	}
	return false
}

// listKeys is GET /api/keys: a page of a group's keys with the status filter, the exact
// key_value lookup of gpt-load and our search (see keySearch).
func (a *admin) listKeys(w http.ResponseWriter, r *http.Request) {
	gid, err := queryGroupID(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	page, size := pagination(r)
	q := r.URL.Query()
	var status domain.KeyStatus
	if s := q.Get("status"); s != "" {
		if status, err = domain.ParseKeyStatus(s); err != nil {
			fail(w, r, err)
			return
		}
	}
	search := newKeySearch(q.Get("search"))
	keyValue := strings.TrimSpace(q.Get("key_value"))
	var hash domain.KeyHash
	if keyValue != "" {
		hash = a.cipher.Hash(keyValue)
	}
	match := func(k *domain.Key) bool {
		return (status == 0 || k.Status == status) && search.match(k)
	}
	now := a.now().UnixNano()
	skip := offset(page, size)
	var items []keyJSON
	total, found := 0, false
	a.state.Read(func(s *domain.State) {
		if _, found = s.Group(gid); !found {
			return
		}
		ks := s.Keys(gid)
		if ks == nil {
			return
		}
		if keyValue != "" {
			if k, ok := ks.ByHash(hash); ok && match(k) {
				total = 1
				if skip == 0 {
					items = append(items, keyOut(k, now))
				}
			}
			return
		}
		known := -1 // the total when the set's counters give it without a scan
		if search.empty() {
			switch status {
			case 0:
				known = ks.Len()
			case domain.KeyActive:
				known = ks.Active()
			case domain.KeyInvalid:
				known = ks.Invalid()
			}
		}
		if known >= 0 && skip >= known {
			total = known
			return
		}
		// gpt-load orders keys by last_used_at descending (never-used keys last), then id
		// descending. last_used_at lives in SQL (key_usage), and ordering by it would
		// read the usage of every key of the group for each page: we keep id descending
		// and read the usage of the page's keys only.
		ks.EachDesc(func(k *domain.Key) bool {
			if !match(k) {
				return true
			}
			if total >= skip && len(items) < size {
				items = append(items, keyOut(k, now))
			}
			total++
			return known < 0 || len(items) < size
		})
		if known >= 0 {
			total = known
		}
	})
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	a.addKeyUsage(r, gid, items)
	ok(w, r, newPage(items, page, size, total))
}

// addKeyUsage fills request_count and last_used_at of a page of keys from key_usage,
// in one query. The keys list stays available when SQL is not: the figures are then
// left empty and the failure logged.
func (a *admin) addKeyUsage(r *http.Request, gid uint64, items []keyJSON) {
	if a.logs == nil || len(items) == 0 {
		return
	}
	hashes := make([]string, len(items))
	for i, k := range items {
		hashes[i] = k.KeyHash
	}
	usage, err := a.logs.KeyUsage(r.Context(), gid, hashes)
	if err != nil {
		hlog.FromRequest(r).Warn().Err(err).Uint64("group_id", gid).Msg("key usage unavailable: keys listed without it")
		return
	}
	for i := range items {
		if u, ok := usage[items[i].KeyHash]; ok {
			t := u.LastUsedAt.Local()
			items[i].RequestCount, items[i].LastUsedAt = u.RequestCount, &t
		}
	}
}

// exportBatch is how many keys an export copies per hold of the state's lock: a slow
// client never holds the projection back.
const exportBatch = 10_000

// exportKeys is GET /api/keys/export: the group's keys in clear, one per line, streamed.
func (a *admin) exportKeys(w http.ResponseWriter, r *http.Request) {
	gid, err := queryGroupID(r)
	if err != nil {
		fail(w, r, err)
		return
	}
	status := r.URL.Query().Get("status")
	var want domain.KeyStatus
	switch status {
	case "", "all":
		status = "all"
	case "active":
		want = domain.KeyActive
	case "invalid":
		want = domain.KeyInvalid
	default:
		fail(w, r, errField(codeValidation, "status", "must be all, active or invalid"))
		return
	}
	g, found := a.group(gid)
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	// Keys leave in clear: the audit trail records who took which, before any is written.
	source, _, splitErr := net.SplitHostPort(r.RemoteAddr)
	if splitErr != nil {
		source = r.RemoteAddr
	}
	if err := a.cmd.RecordKeysExported(r.Context(), events.ActorAdmin,
		domain.KeysExported{GroupID: gid, GroupName: g.Name, Status: status, Source: source}); err != nil {
		fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set(headerContentType, contentTypePlain)
	h.Set("Content-Disposition", `attachment; filename="keys-`+g.Name+`-`+status+`.txt"`)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	var after uint64
	for r.Context().Err() == nil {
		batch := make([]string, 0, exportBatch)
		a.state.Read(func(s *domain.State) {
			ks := s.Keys(gid)
			if ks == nil {
				return
			}
			ks.Each(func(k *domain.Key) bool {
				if k.ID <= after {
					return true
				}
				after = k.ID
				if want == 0 || k.Status == want {
					batch = append(batch, k.Value)
				}
				return len(batch) < exportBatch
			})
		})
		for _, v := range batch {
			bw.WriteString(v)
			bw.WriteByte('\n')
		}
		if len(batch) < exportBatch {
			return
		}
	}
}

// group returns the group with id; groups are never modified in place, so the pointer
// stays valid.
func (a *admin) group(id uint64) (*domain.Group, bool) {
	g := read(a.state, func(s *domain.State) *domain.Group { g, _ := s.Group(id); return g })
	return g, g != nil
}

// keysInGroup counts the group's keys.
func (a *admin) keysInGroup(id uint64) int {
	return read(a.state, func(s *domain.State) int {
		if ks := s.Keys(id); ks != nil {
			return ks.Len()
		}
		return 0
	})
}

// keysBody is the body {group_id, keys_text} of the key endpoints.
type keysBody struct {
	GroupID  uint64 `json:"group_id"`
	KeysText string `json:"keys_text"`
}

// readKeysBody reads and checks a keys body in the order of API.md 3.2: required fields,
// the group, text that is not blank; with limit > 0, the parsed entries too (at least
// one, at most limit, none longer than domain.MaxKeyBytes). asyncRoute, when set, is the
// task endpoint a batch over the limit is pointed to.
func (a *admin) readKeysBody(w http.ResponseWriter, r *http.Request, limit int, asyncRoute string) (keysBody, *domain.Group, []string, error) {
	var b keysBody
	if err := decodeJSON(w, r, &b); err != nil {
		return b, nil, nil, err
	}
	if b.GroupID == 0 {
		return b, nil, nil, errRequired("group_id")
	}
	if b.KeysText == "" {
		return b, nil, nil, errRequired("keys_text")
	}
	g, found := a.group(b.GroupID)
	if !found {
		return b, nil, nil, errNotFound(msgGroupNotFound)
	}
	if trimmedEmpty(b.KeysText) {
		return b, nil, nil, withField(errValidation(msgKeysTextEmpty), "keys_text")
	}
	if limit <= 0 {
		return b, g, nil, nil
	}
	keys := domain.ParseKeysText(b.KeysText)
	if len(keys) == 0 {
		return b, nil, nil, withField(errValidation(msgNoValidKeys), "keys_text")
	}
	if len(keys) > limit {
		if asyncRoute != "" {
			return b, nil, nil, withField(errValidation(msgBatchUseAsync, limit, len(keys), asyncRoute), "keys_text")
		}
		return b, nil, nil, withField(errValidation(msgBatchTooLarge, limit, len(keys)), "keys_text")
	}
	if i := domain.LongKeyEntry(keys); i > 0 {
		return b, nil, nil, withField(errValidation(msgKeyTooLong, i, domain.MaxKeyBytes), "keys_text")
	}
	return b, g, keys, nil
}

// withField names the field a fixed-message error is about.
func withField(e *apiError, field string) *apiError {
	e.fields = []domain.FieldError{{Field: field, Message: trLang(langEN, e.msg, e.args...)}}
	e.field = field
	return e
}

func (a *admin) addKeys(w http.ResponseWriter, r *http.Request) {
	b, _, keys, err := a.readKeysBody(w, r, domain.MaxSyncKeys, "/api/keys/add-async")
	if err != nil {
		fail(w, r, err)
		return
	}
	ctx, cancel := commandContext(r)
	defer cancel()
	rep, err := a.cmd.AddKeys(ctx, events.ActorAdmin, b.GroupID, keys, nil)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, map[string]int{"added_count": rep.Added, "ignored_count": len(keys) - rep.Added,
		"total_in_group": a.keysInGroup(b.GroupID)})
}

func (a *admin) deleteKeys(w http.ResponseWriter, r *http.Request) {
	b, _, keys, err := a.readKeysBody(w, r, domain.MaxSyncKeys, "/api/keys/delete-async")
	if err != nil {
		fail(w, r, err)
		return
	}
	ctx, cancel := commandContext(r)
	defer cancel()
	n, err := a.cmd.RemoveKeys(ctx, events.ActorAdmin, b.GroupID, keys, nil)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, map[string]int{"deleted_count": n, "ignored_count": len(keys) - n,
		"total_in_group": a.keysInGroup(b.GroupID)})
}

func (a *admin) restoreKeys(w http.ResponseWriter, r *http.Request) {
	b, _, keys, err := a.readKeysBody(w, r, domain.MaxSyncKeys, "")
	if err != nil {
		fail(w, r, err)
		return
	}
	ctx, cancel := commandContext(r)
	defer cancel()
	n, err := a.cmd.RestoreKeys(ctx, events.ActorAdmin, b.GroupID, keys)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, map[string]int{"restored_count": n, "ignored_count": len(keys) - n,
		"total_in_group": a.keysInGroup(b.GroupID)})
}

// readGroupBody reads the body {group_id} of the bulk key endpoints.
func readGroupBody(w http.ResponseWriter, r *http.Request) (uint64, error) {
	var b struct {
		GroupID uint64 `json:"group_id"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		return 0, err
	}
	if b.GroupID == 0 {
		return 0, errRequired("group_id")
	}
	return b.GroupID, nil
}

func (a *admin) restoreAllInvalid(w http.ResponseWriter, r *http.Request) {
	gid, err := readGroupBody(w, r)
	if err != nil {
		fail(w, r, err)
		return
	}
	n, err := a.cmd.RestoreAllInvalid(r.Context(), events.ActorAdmin, gid)
	if err != nil {
		fail(w, r, err)
		return
	}
	okMsg(w, r, nil, msgKeysRestored, n)
}

func (a *admin) clearAllInvalid(w http.ResponseWriter, r *http.Request) {
	a.clear(w, r, domain.ScopeInvalid, msgInvalidKeysCleared)
}

func (a *admin) clearAll(w http.ResponseWriter, r *http.Request) {
	a.clear(w, r, domain.ScopeAll, msgKeysCleared)
}

func (a *admin) clear(w http.ResponseWriter, r *http.Request, scope domain.KeyScope, msg msgID) {
	gid, err := readGroupBody(w, r)
	if err != nil {
		fail(w, r, err)
		return
	}
	n, err := a.cmd.ClearKeys(r.Context(), events.ActorAdmin, gid, scope)
	if err != nil {
		fail(w, r, err)
		return
	}
	okMsg(w, r, nil, msg, n)
}

func (a *admin) disableKeys(w http.ResponseWriter, r *http.Request) { a.setDisabled(w, r, true) }
func (a *admin) enableKeys(w http.ResponseWriter, r *http.Request)  { a.setDisabled(w, r, false) }

// setDisabled is POST /api/keys/disable-multiple and enable-multiple (ours): keys named
// by id (key_ids) and/or by value (keys_text) leave the rotation without being deleted,
// or come back. A disabled key is never selected and never revalidated.
func (a *admin) setDisabled(w http.ResponseWriter, r *http.Request, disabled bool) {
	var b struct {
		GroupID  uint64   `json:"group_id"`
		KeyIDs   []uint64 `json:"key_ids"`
		KeysText string   `json:"keys_text"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		fail(w, r, err)
		return
	}
	if b.GroupID == 0 {
		fail(w, r, errRequired("group_id"))
		return
	}
	if len(b.KeyIDs) == 0 && trimmedEmpty(b.KeysText) {
		fail(w, r, errField(codeInvalidJSON, "key_ids", "key_ids or keys_text is required"))
		return
	}
	if _, found := a.group(b.GroupID); !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	values := domain.ParseKeysText(b.KeysText)
	asked := len(b.KeyIDs) + len(values)
	if asked > domain.MaxSyncKeys {
		fail(w, r, withField(errValidation(msgBatchTooLarge, domain.MaxSyncKeys, asked), "key_ids"))
		return
	}
	for i, id := range b.KeyIDs {
		if id == 0 {
			fail(w, r, errField(codeValidation, fmt.Sprintf("key_ids[%d]", i), "must be a positive integer"))
			return
		}
	}
	ids := append([]uint64(nil), b.KeyIDs...)
	if len(values) > 0 {
		hashes := make([]domain.KeyHash, len(values))
		for i, v := range values {
			hashes[i] = a.cipher.Hash(v)
		}
		a.state.Read(func(s *domain.State) {
			ks := s.Keys(b.GroupID)
			if ks == nil {
				return
			}
			for _, h := range hashes {
				if k, ok := ks.ByHash(h); ok {
					ids = append(ids, k.ID)
				}
			}
		})
	}
	n := 0
	if len(ids) > 0 {
		var err error
		if n, err = a.cmd.SetKeysDisabled(r.Context(), events.ActorAdmin, b.GroupID, ids, disabled); err != nil {
			fail(w, r, err)
			return
		}
	}
	field, msg := "enabled_count", msgKeysEnabled
	if disabled {
		field, msg = "disabled_count", msgKeysDisabled
	}
	okMsg(w, r, map[string]int{field: n, "ignored_count": asked - n, "total_in_group": a.keysInGroup(b.GroupID)}, msg, n)
}

func (a *admin) setKeyNotes(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "id", msgInvalidKeyID)
	if err != nil {
		fail(w, r, err)
		return
	}
	var b struct {
		Notes string `json:"notes"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		fail(w, r, err)
		return
	}
	if err := a.cmd.SetKeyNotes(r.Context(), events.ActorAdmin, id, b.Notes); err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, nil)
}
