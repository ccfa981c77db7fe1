package httpapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// maxKeyLen bounds one entry of key text read as a stream (async imports and deletes):
// the reader holds at most one entry at a time.
const maxKeyLen = 64 << 10

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
	sc := bufio.NewScanner(t.src)
	sc.Buffer(make([]byte, 0, 64<<10), maxKeyLen+1)
	sc.Split(splitKeys)
	n, fields := 0, 0
	for sc.Scan() {
		fields++
		tok := sc.Bytes()
		if len(tok) > maxKeyLen {
			return n, errKeyTooLong{entry: fields}
		}
		s := strings.TrimSpace(string(tok))
		if s == "" {
			continue
		}
		n++
		if emit != nil {
			if err := emit(s); err != nil {
				return n, err
			}
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		return n, errKeyTooLong{entry: fields + 1}
	}
	return n, sc.Err()
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
