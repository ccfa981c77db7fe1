package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
)

// taskBatch is how many entries of key text an import or delete hands to one command:
// with the entry being parsed, all a task holds of its input.
const taskBatch = 10_000

// keyIterator calls emit for each key of a task's input, in order, and stops at emit's
// first error.
type keyIterator func(emit func(string) error) error

// keyTextError turns an error reading the key text of field into the answer.
func keyTextError(err error, field string) error {
	var long errKeyTooLong
	if errors.As(err, &long) {
		return withField(errValidation(msgKeyTooLong, long.entry, maxKeyLen), field)
	}
	return err
}

// addKeysAsync is POST /api/keys/add-async: a JSON body {group_id, keys_text}, or a
// multipart upload of a .txt file with a group_id field. The text is read as a stream,
// the keys go to the group in batches, and /api/tasks/status shows the progress.
func (a *admin) addKeysAsync(w http.ResponseWriter, r *http.Request) {
	if isMultipart(r) {
		a.uploadKeys(w, r)
		return
	}
	g, kt, err := a.readAsyncKeys(w, r)
	if err != nil {
		fail(w, r, err)
		return
	}
	st, err := a.startImport(r, g.ID, g.Name, kt.entries, kt.each)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, st)
}

func isMultipart(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get(headerContentType))
	return mt == contentTypeForm
}

// uploadKeys takes a multipart upload of a key file. Nothing of it is written to disk:
// the file is parsed while it arrives, whatever the order of the parts, and the import
// task starts from the parsed entries once the upload is read, so the answer (the task's
// first status) follows the last byte of the upload. Plain text is parsed as a stream into
// a compact in-memory list (each entry's bytes plus 4); a file that starts with '[' may be
// a JSON array (API.md 3.2), which is only known at its end, so it is kept whole and
// parsed then.
func (a *admin) uploadKeys(w http.ResponseWriter, r *http.Request) {
	mr, err := r.MultipartReader()
	if err != nil {
		fail(w, r, &apiError{status: http.StatusBadRequest, code: codeBadRequest, text: "malformed multipart body: " + err.Error()})
		return
	}
	var (
		gidText string
		hasGID  bool
		keys    *uploadedKeys
	)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(w, r, uploadError(err))
			return
		}
		switch part.FormName() {
		case "group_id":
			v, err := io.ReadAll(io.LimitReader(part, 64))
			if err != nil {
				fail(w, r, uploadError(err))
				return
			}
			gidText, hasGID = strings.TrimSpace(string(v)), true
		case "file":
			if keys != nil {
				fail(w, r, errField(codeBadRequest, "file", "send one file"))
				return
			}
			if !strings.EqualFold(filepath.Ext(part.FileName()), ".txt") {
				fail(w, r, withField(errValidation(msgOnlyTxt), "file"))
				return
			}
			if keys, err = readUploadedKeys(part); err != nil {
				var long errKeyTooLong
				if errors.As(err, &long) {
					fail(w, r, keyTextError(err, "file"))
					return
				}
				fail(w, r, uploadError(err))
				return
			}
		}
		part.Close()
	}
	if !hasGID || gidText == "" {
		fail(w, r, errBadRequest(msgGroupIDRequired))
		return
	}
	gid, err := strconv.ParseUint(gidText, 10, 64)
	if err != nil || gid == 0 {
		fail(w, r, errBadRequest(msgGroupIDInvalid))
		return
	}
	if keys == nil {
		fail(w, r, errBadRequest(msgFileRequired))
		return
	}
	g, found := a.group(gid)
	if !found {
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	}
	if keys.entries == 0 {
		fail(w, r, withField(errValidation(msgNoValidKeys), "file"))
		return
	}
	st, err := a.startImport(r, g.ID, g.Name, keys.entries, keys.each)
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, st)
}

// uploadedKeys are the entries of an uploaded key file, held in memory until imported.
type uploadedKeys struct {
	entries int
	each    keyIterator
}

// readUploadedKeys parses a key file as it is read (see uploadKeys).
func readUploadedKeys(src io.Reader) (*uploadedKeys, error) {
	br := bufio.NewReaderSize(src, 64<<10)
	for { // leading white space: trimmed or a separator either way
		c, _, err := br.ReadRune()
		if errors.Is(err, io.EOF) {
			return &uploadedKeys{each: func(func(string) error) error { return nil }}, nil
		}
		if err != nil {
			return nil, err
		}
		if !unicode.IsSpace(c) {
			br.UnreadRune()
			if c == '[' {
				break
			}
			var list keyList
			if err := splitEntries(br, list.add); err != nil {
				return nil, err
			}
			return &uploadedKeys{entries: list.len(), each: list.each}, nil
		}
	}
	raw, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}
	kt, err := scanKeyText(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	return &uploadedKeys{entries: kt.entries, each: kt.each}, nil
}

// keyList holds key entries compactly: their bytes end to end and where each one ends.
type keyList struct {
	data []byte
	ends []uint32 // an upload is at most maxUploadBody bytes
}

func (l *keyList) add(k []byte) error {
	l.data = append(l.data, k...)
	l.ends = append(l.ends, uint32(len(l.data)))
	return nil
}

func (l *keyList) len() int { return len(l.ends) }

func (l *keyList) each(emit func(string) error) error {
	start := uint32(0)
	for _, end := range l.ends {
		if err := emit(string(l.data[start:end])); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func uploadError(err error) error {
	var big *http.MaxBytesError
	if errors.As(err, &big) {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: codeBadRequest,
			text: fmt.Sprintf("the upload is larger than %d bytes", big.Limit)}
	}
	return &apiError{status: http.StatusBadRequest, code: codeBadRequest, text: "malformed multipart body: " + err.Error()}
}

// batcher feeds a task's keys to a command in batches of taskBatch.
type batcher struct {
	batch []string
	done  int // entries handed to the command so far
	run   func(batch []string, done int) error
}

func (b *batcher) add(k string) error {
	if b.batch == nil {
		b.batch = make([]string, 0, taskBatch)
	}
	b.batch = append(b.batch, k)
	if len(b.batch) == taskBatch {
		return b.flush()
	}
	return nil
}

func (b *batcher) flush() error {
	if len(b.batch) == 0 {
		return nil
	}
	err := b.run(b.batch, b.done)
	b.done += len(b.batch)
	clear(b.batch) // let the values go
	b.batch = b.batch[:0]
	return err
}

// startImport starts the import task: keys from iterate go to the group in batches.
func (a *admin) startImport(r *http.Request, gid uint64, name string, total int, iterate keyIterator) (tasks.Status, error) {
	return a.tasks.Start(a.taskContext(r), tasks.KeyImport, name, total, func(ctx context.Context, p *tasks.Progress) (any, error) {
		added := 0
		b := &batcher{run: func(batch []string, done int) error {
			rep, err := a.cmd.AddKeys(ctx, events.ActorAdmin, gid, batch, func(n int) { p.Set(done + n) })
			added += rep.Added
			return err
		}}
		if err := iterate(b.add); err != nil {
			return nil, err
		}
		if err := b.flush(); err != nil {
			return nil, err
		}
		p.Set(b.done)
		return domain.AddReport{Added: added, Ignored: b.done - added}, nil
	})
}

// deleteResult is the result of a delete task.
type deleteResult struct {
	Deleted int `json:"deleted_count"`
	Ignored int `json:"ignored_count"`
}

// readAsyncKeys reads the JSON body of an async key task: the group, and its key text
// scanned once for counting (the task scans it again as it runs); no key is an error.
func (a *admin) readAsyncKeys(w http.ResponseWriter, r *http.Request) (*domain.Group, *keyText, error) {
	b, g, _, err := a.readKeysBody(w, r, 0, "")
	if err != nil {
		return nil, nil, err
	}
	kt, err := scanKeyText(strings.NewReader(b.KeysText))
	if err != nil {
		return nil, nil, keyTextError(err, "keys_text")
	}
	if kt.entries == 0 {
		return nil, nil, withField(errValidation(msgNoValidKeys), "keys_text")
	}
	return g, kt, nil
}

// deleteKeysAsync is POST /api/keys/delete-async: like add-async (JSON only), deleting.
func (a *admin) deleteKeysAsync(w http.ResponseWriter, r *http.Request) {
	g, kt, err := a.readAsyncKeys(w, r)
	if err != nil {
		fail(w, r, err)
		return
	}
	st, err := a.tasks.Start(a.taskContext(r), tasks.KeyDelete, g.Name, kt.entries, func(ctx context.Context, p *tasks.Progress) (any, error) {
		deleted := 0
		bt := &batcher{run: func(batch []string, done int) error {
			n, err := a.cmd.RemoveKeys(ctx, events.ActorAdmin, g.ID, batch, func(n int) { p.Set(done + n) })
			deleted += n
			return err
		}}
		if err := kt.each(bt.add); err != nil {
			return nil, err
		}
		if err := bt.flush(); err != nil {
			return nil, err
		}
		p.Set(bt.done)
		return deleteResult{Deleted: deleted, Ignored: bt.done - deleted}, nil
	})
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, st)
}

// validationResult is the result of a validation task.
type validationResult struct {
	TotalKeys   int `json:"total_keys"`
	ValidKeys   int `json:"valid_keys"`
	InvalidKeys int `json:"invalid_keys"`
}

func (a *admin) validator() (KeyValidator, error) {
	if a.d.Validator == nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, code: codeUnavailable, msg: msgValidatorMissing}
	}
	return a.d.Validator, nil
}

// validateGroup is POST /api/keys/validate-group: validates the group's keys (or those
// with the given status) with the group's key_validation_concurrency, as a task. Disabled
// keys are left out: they are never revalidated.
func (a *admin) validateGroup(w http.ResponseWriter, r *http.Request) {
	var b struct {
		GroupID uint64 `json:"group_id"`
		Status  string `json:"status"`
	}
	if err := decodeJSON(w, r, &b); err != nil {
		fail(w, r, err)
		return
	}
	if b.GroupID == 0 {
		fail(w, r, errRequired("group_id"))
		return
	}
	v, err := a.validator()
	if err != nil {
		fail(w, r, err)
		return
	}
	var status domain.KeyStatus
	if b.Status != "" {
		if status, err = domain.ParseKeyStatus(b.Status); err != nil {
			fail(w, r, err)
			return
		}
	}
	var (
		ids         []uint64
		name        string
		concurrency int
		found, agg  bool
	)
	a.state.Read(func(s *domain.State) {
		g, ok := s.Group(b.GroupID)
		if !ok {
			return
		}
		found, agg, name = true, g.Type == domain.GroupAggregate, g.Name
		concurrency = s.Effective(g).KeyValidationConcurrency
		if ks := s.Keys(g.ID); ks != nil && !agg {
			ks.Each(func(k *domain.Key) bool {
				if !k.Disabled && (status == 0 || k.Status == status) {
					ids = append(ids, k.ID)
				}
				return true
			})
		}
	})
	switch {
	case !found:
		fail(w, r, errNotFound(msgGroupNotFound))
		return
	case agg:
		fail(w, r, errField(codeValidation, "group_id", fmt.Sprintf("group %q is an aggregate group and holds no keys", name)))
		return
	case len(ids) == 0:
		fail(w, r, errValidation(msgNoKeysToValidate))
		return
	}
	st, err := a.tasks.Start(a.taskContext(r), tasks.KeyValidation, name, len(ids), func(ctx context.Context, p *tasks.Progress) (any, error) {
		valid, invalid, err := v.ValidateKeys(ctx, b.GroupID, ids, concurrency, p.Set)
		if err != nil {
			return nil, err
		}
		p.Set(len(ids))
		return validationResult{TotalKeys: len(ids), ValidKeys: valid, InvalidKeys: invalid}, nil
	})
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, st)
}

type testResult struct {
	KeyValue string `json:"key_value"`
	IsValid  bool   `json:"is_valid"`
	Error    string `json:"error,omitempty"`
}

// testKeys is POST /api/keys/test-multiple: validates the listed keys one after the
// other, in input order; keys not in the group are reported, not tested. Testing changes
// key state like any validation.
func (a *admin) testKeys(w http.ResponseWriter, r *http.Request) {
	b, _, keys, err := a.readKeysBody(w, r, domain.MaxSyncKeys, "")
	if err != nil {
		fail(w, r, err)
		return
	}
	v, err := a.validator()
	if err != nil {
		fail(w, r, err)
		return
	}
	start := time.Now()
	present := make([]bool, len(keys))
	hashes := make([]domain.KeyHash, len(keys))
	for i, k := range keys {
		hashes[i] = a.cipher.Hash(k)
	}
	a.state.Read(func(s *domain.State) {
		if ks := s.Keys(b.GroupID); ks != nil {
			for i, h := range hashes {
				_, present[i] = ks.ByHash(h)
			}
		}
	})
	results := make([]testResult, 0, len(keys))
	for i, k := range keys {
		if !present[i] {
			results = append(results, testResult{KeyValue: k, Error: tr(r, msgKeyNotInGroup)})
			continue
		}
		valid, msg, err := v.TestKey(r.Context(), b.GroupID, k)
		switch {
		case err != nil && r.Context().Err() != nil:
			fail(w, r, err)
			return
		case err != nil:
			results = append(results, testResult{KeyValue: k, Error: tr(r, msgValidationTaskFailed, err.Error())})
		case valid:
			results = append(results, testResult{KeyValue: k, IsValid: true})
		default:
			results = append(results, testResult{KeyValue: k, Error: msg})
		}
	}
	ok(w, r, map[string]any{"results": results, "total_duration": time.Since(start).Milliseconds()})
}

// taskStatus is GET /api/tasks/status.
func (a *admin) taskStatus(w http.ResponseWriter, r *http.Request) {
	st, err := a.tasks.Store().Current(r.Context())
	if err != nil {
		fail(w, r, err)
		return
	}
	ok(w, r, st)
}
