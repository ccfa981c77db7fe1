package httpapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"gpt-load/domain"
)

// maxKeyLen bounds one entry of key text, on every key endpoint (domain.MaxKeyBytes).
const maxKeyLen = domain.MaxKeyBytes

// errKeyTooLong reports an entry longer than maxKeyLen; entry is its 1-based position.
type errKeyTooLong struct{ entry int }

func (e errKeyTooLong) Error() string {
	return fmt.Sprintf("entry %d is longer than %d bytes", e.entry, maxKeyLen)
}

// keyText is key text read as a stream, in bounded memory, with the result of
// domain.ParseKeysText: a JSON array of strings (with at least one element) gives its
// elements; any other text is split on runs of white space, ',' and ';'. Entries are
// trimmed and empty ones dropped. It is read twice: once by scanKeyText, to choose the
// form and count the entries before a task starts, then by each.
type keyText struct {
	src     io.ReadSeeker
	json    bool
	entries int
}

// scanKeyText reads src once to choose its form and count its entries.
func scanKeyText(src io.ReadSeeker) (*keyText, error) {
	t := &keyText{src: src}
	isJSON, err := t.looksJSON()
	if err != nil {
		return nil, err
	}
	if isJSON {
		n, elems, err := t.eachJSON(nil)
		if err != nil && !errors.Is(err, errNotKeyArray) {
			return nil, err
		}
		if err == nil && elems > 0 {
			t.json, t.entries = true, n
			return t, nil
		}
	}
	n, err := t.eachSplit(nil)
	if err != nil {
		return nil, err
	}
	t.entries = n
	return t, nil
}

// each calls emit for every entry, in order.
func (t *keyText) each(emit func(string) error) error {
	var err error
	if t.json {
		_, _, err = t.eachJSON(emit)
	} else {
		_, err = t.eachSplit(emit)
	}
	return err
}

func (t *keyText) rewind() error {
	_, err := t.src.Seek(0, io.SeekStart)
	return err
}

// looksJSON reports whether the text, trimmed, starts with '['.
func (t *keyText) looksJSON() (bool, error) {
	if err := t.rewind(); err != nil {
		return false, err
	}
	br := bufio.NewReader(t.src)
	for {
		r, _, err := br.ReadRune()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !unicode.IsSpace(r) {
			return r == '[', nil
		}
	}
}

// errNotKeyArray means the text is not a JSON array of strings.
var errNotKeyArray = errors.New("not a JSON array of strings")

// eachJSON reads the text as a JSON array of strings, calling emit (when not nil) for
// each non-empty trimmed element. It returns the entries emitted and the elements of the
// array, or errNotKeyArray (with no entry emitted when emit is nil; callers only emit
// after a successful scan).
func (t *keyText) eachJSON(emit func(string) error) (entries, elems int, err error) {
	if err := t.rewind(); err != nil {
		return 0, 0, err
	}
	br := bufio.NewReader(t.src)
	for { // leading white space, as strings.TrimSpace sees it
		r, _, err := br.ReadRune()
		if err != nil {
			return 0, 0, errNotKeyArray
		}
		if !unicode.IsSpace(r) {
			br.UnreadRune()
			break
		}
	}
	dec := json.NewDecoder(br)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return 0, 0, errNotKeyArray
	}
	for dec.More() {
		var s string // null leaves it empty, as json.Unmarshal does
		if err := dec.Decode(&s); err != nil {
			return 0, 0, errNotKeyArray
		}
		elems++
		if len(s) > maxKeyLen {
			return 0, 0, errKeyTooLong{entry: elems}
		}
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		entries++
		if emit != nil {
			if err := emit(s); err != nil {
				return entries, elems, err
			}
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return 0, 0, errNotKeyArray
	}
	// Only white space may follow the array.
	rest := bufio.NewReader(io.MultiReader(dec.Buffered(), br))
	for {
		r, _, err := rest.ReadRune()
		if errors.Is(err, io.EOF) {
			return entries, elems, nil
		}
		if err != nil || !unicode.IsSpace(r) {
			return 0, 0, errNotKeyArray
		}
	}
}

// eachSplit reads the text as entries separated by runs of ' ', '\t', '\r', '\n', '\f',
// ',' and ';' (all ASCII, so splitting bytes splits runes alike), calling emit (when not
// nil) for each non-empty trimmed entry. It returns the entries emitted.
func (t *keyText) eachSplit(emit func(string) error) (int, error) {
	if err := t.rewind(); err != nil {
		return 0, err
	}
	n := 0
	err := splitEntries(t.src, func(k []byte) error {
		n++
		if emit != nil {
			return emit(string(k))
		}
		return nil
	})
	return n, err
}

// splitEntries reads plain key text (see eachSplit) as a stream, calling emit with each
// non-empty trimmed entry; the bytes are valid only during the call. An entry longer than
// maxKeyLen stops it with errKeyTooLong.
func splitEntries(src io.Reader, emit func([]byte) error) error {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	sc.Split(splitKeys)
	fields := 0
	for sc.Scan() {
		fields++
		tok := sc.Bytes()
		if len(tok) > maxKeyLen {
			return errKeyTooLong{entry: fields}
		}
		k := bytes.TrimSpace(tok)
		if len(k) == 0 {
			continue
		}
		if err := emit(k); err != nil {
			return err
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return errKeyTooLong{entry: fields + 1}
	}
	return sc.Err()
}

func isKeySeparator(b byte) bool {
	switch b {
	case ' ', '\t', '\r', '\n', '\f', ',', ';':
		return true
	}
	return false
}

// splitKeys is a bufio.SplitFunc yielding the runs between separators.
func splitKeys(data []byte, atEOF bool) (advance int, token []byte, err error) {
	start := 0
	for start < len(data) && isKeySeparator(data[start]) {
		start++
	}
	for i := start; i < len(data); i++ {
		if isKeySeparator(data[i]) {
			return i + 1, data[start:i], nil
		}
	}
	if atEOF && len(data) > start {
		return len(data), data[start:], nil
	}
	return start, nil, nil
}
