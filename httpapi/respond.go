package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog/hlog"

	"gpt-load/domain"
	"gpt-load/events"
	"gpt-load/httpapi/tasks"
)

// Error codes of the error envelope (API.md 0.2, with our decisions of API.md 11).
const (
	codeBadRequest     = "BAD_REQUEST"
	codeInvalidJSON    = "INVALID_JSON"
	codeValidation     = "VALIDATION_FAILED"
	codeSettings       = "VALIDATION_ERROR" // PUT /api/settings (ours: gpt-load said 500 DATABASE_ERROR)
	codeNotFound       = "NOT_FOUND"
	codeDuplicate      = "DUPLICATE_RESOURCE"
	codeConflict       = "CONFLICT"
	codeTaskInProgress = "TASK_IN_PROGRESS"
	codeUnauthorized   = "UNAUTHORIZED"
	codeInternal       = "INTERNAL_SERVER_ERROR"
	codeUnavailable    = "SERVICE_UNAVAILABLE"
	codeTooMany        = "TOO_MANY_REQUESTS"
)

const (
	defaultPageSize = 15
	maxPageSize     = 1000
	// commandTimeout bounds a command a request started: it is not cut short when the
	// client goes away, so a bulk change is never left half done by a closed connection.
	commandTimeout = 2 * time.Minute
)

const (
	headerContentType = "Content-Type"
	contentTypeJSON   = "application/json; charset=utf-8"
	contentTypePlain  = "text/plain; charset=utf-8"
	contentTypeForm   = "multipart/form-data"
)

// apiError is an error the API answers with a given status and code. Its message is a
// localized fixed text (msg with args) or, when msg is empty, text as it is.
type apiError struct {
	status int
	code   string
	msg    msgID
	args   []any
	text   string
	fields []domain.FieldError
	field  string // the field a fixed message is about, named before it
}

func (e *apiError) Error() string { return e.message(langEN) }

func (e *apiError) message(l lang) string {
	if e.msg == "" {
		return e.text
	}
	m := trLang(l, e.msg, e.args...)
	if e.field != "" {
		m = e.field + ": " + m
	}
	return m
}

func errBadRequest(msg msgID, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeBadRequest, msg: msg, args: args}
}

func errNotFound(msg msgID, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: codeNotFound, msg: msg, args: args}
}

func errValidation(msg msgID, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: codeValidation, msg: msg, args: args}
}

// errField is a 400 of the given code that names one field.
func errField(code, field, message string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, text: field + ": " + message,
		fields: []domain.FieldError{{Field: field, Message: message}}}
}

// errRequired is the binding error of a missing required field (API.md 0.2: INVALID_JSON).
func errRequired(field string) *apiError {
	return errField(codeInvalidJSON, field, "is required")
}

type successBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type errorBody struct {
	Code    string              `json:"code"`
	Message string              `json:"message"`
	Fields  []domain.FieldError `json:"fields,omitempty"`
}

// ok writes the success envelope with the generic success message.
func ok(w http.ResponseWriter, r *http.Request, data any) {
	okMsg(w, r, data, msgSuccess)
}

// okMsg writes the success envelope with a localized message.
func okMsg(w http.ResponseWriter, r *http.Request, data any, msg msgID, args ...any) {
	writeJSON(w, http.StatusOK, successBody{Code: 0, Message: tr(r, msg, args...), Data: data})
}

// fail writes the error envelope for err: the one place where errors become statuses.
func fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorResponse(r, err)
	if status >= http.StatusInternalServerError && status != http.StatusServiceUnavailable {
		hlog.FromRequest(r).Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin request failed")
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, body)
}

func errorResponse(r *http.Request, err error) (int, errorBody) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status, errorBody{Code: ae.code, Message: ae.message(langOf(r)), Fields: ae.fields}
	}
	if errors.Is(err, tasks.ErrBusy) {
		return http.StatusConflict, errorBody{Code: codeTaskInProgress, Message: tr(r, msgTaskBusy)}
	}
	if r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return http.StatusServiceUnavailable, errorBody{Code: codeUnavailable, Message: tr(r, msgCancelled)}
	}
	if errors.Is(err, events.ErrLogUnavailable) {
		return http.StatusServiceUnavailable, errorBody{Code: codeUnavailable, Message: tr(r, msgLogUnavailable)}
	}
	var de *domain.Error
	if errors.As(err, &de) {
		switch de.Code {
		case domain.EINVALID:
			return http.StatusBadRequest, errorBody{Code: codeValidation, Message: de.Error(), Fields: de.Fields}
		case domain.ENOTFOUND:
			return http.StatusNotFound, errorBody{Code: codeNotFound, Message: de.Error()}
		case domain.EDUPLICATE:
			return http.StatusConflict, errorBody{Code: codeDuplicate, Message: de.Error()}
		case domain.ECONFLICT:
			return http.StatusConflict, errorBody{Code: codeConflict, Message: de.Error()}
		case domain.EUNAUTHORIZED:
			return http.StatusUnauthorized, errorBody{Code: codeUnauthorized, Message: tr(r, msgAuthFailed)}
		}
	}
	return http.StatusInternalServerError, errorBody{Code: codeInternal, Message: tr(r, msgUnexpected)}
}

// commandContext is the context of a command started by r: r's values without its
// cancellation, bounded by commandTimeout.
func commandContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), commandTimeout)
}

// decodeJSON reads a JSON request body into v; the route's limitBody bounds it. A body
// that is not JSON, a value of the wrong type or trailing data is a 400 INVALID_JSON
// naming the field where it can, a body over the route's limit a 413. The body is also
// held to strictJSON: a key given twice in one object, or a key that the object's Go
// type does not know, is a 400 INVALID_JSON naming it (encoding/json would keep the last
// value, or drop the key, without a word).
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	// The route's limit has bounded a declared length: read into a buffer of that size at
	// once rather than growing one (a 256 MiB key batch would peak at twice that).
	buf := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 0)+bytes.MinRead))
	if _, err := buf.ReadFrom(r.Body); err != nil {
		return jsonError(err)
	}
	raw := buf.Bytes()
	if len(bytes.TrimSpace(raw)) == 0 {
		return jsonError(io.EOF)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &apiError{status: http.StatusBadRequest, code: codeInvalidJSON, text: "unexpected data after the JSON value"}
	}
	return strictJSON(raw, reflect.TypeOf(v))
}

// strictJSON checks a JSON document against the Go type it is decoded into: no object
// holds a key twice (for a struct, twice up to case, as encoding/json matches names), and
// no object decoded into a struct holds a key the struct does not know. Maps, raw values
// and interfaces accept any key, once. The document must already be known to be JSON.
func strictJSON(raw []byte, t reflect.Type) error {
	err := walkJSON(json.NewDecoder(bytes.NewReader(raw)), t, "")
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return nil
}

func walkJSON(dec *json.Decoder, t reflect.Type, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, isDelim := tok.(json.Delim)
	if !isDelim {
		return nil
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var (
		fields map[string]jsonField // the object is a struct
		elem   reflect.Type         // the type of its elements or values
	)
	if t != nil {
		switch t.Kind() {
		case reflect.Struct:
			fields = jsonFields(t)
		case reflect.Map, reflect.Slice, reflect.Array:
			if t != rawMessage {
				elem = t.Elem()
			}
		}
	}
	if d == '[' {
		for i := 0; dec.More(); i++ {
			if err := walkJSON(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token()
		return err
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		name := key
		if path != "" {
			name = path + "." + key
		}
		id, vt := key, elem
		if fields != nil {
			f, known := lookupField(fields, key)
			if !known {
				return errField(codeInvalidJSON, name, "is not a known field")
			}
			id, vt = f.name, f.typ
		}
		if seen[id] {
			return errField(codeInvalidJSON, name, "is given more than once")
		}
		seen[id] = true
		if err := walkJSON(dec, vt, name); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}

var rawMessage = reflect.TypeOf(json.RawMessage(nil))

type jsonField struct {
	name string
	typ  reflect.Type
}

// jsonFields lists the JSON names of a struct's fields as encoding/json sees them,
// fields of embedded structs included.
func jsonFields(t reflect.Type) map[string]jsonField {
	out := map[string]jsonField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					if _, shadowed := out[k]; !shadowed {
						out[k] = v
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = jsonField{name: name, typ: f.Type}
	}
	return out
}

// lookupField finds key among fields as encoding/json does: the exact name first, else
// one equal up to case.
func lookupField(fields map[string]jsonField, key string) (jsonField, bool) {
	if f, found := fields[key]; found {
		return f, true
	}
	for name, f := range fields {
		if strings.EqualFold(name, key) {
			return f, true
		}
	}
	return jsonField{}, false
}

func jsonError(err error) *apiError {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		big *http.MaxBytesError
	)
	switch {
	case errors.Is(err, io.EOF):
		return &apiError{status: http.StatusBadRequest, code: codeInvalidJSON, text: "the request body is empty: a JSON object is expected"}
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{status: http.StatusBadRequest, code: codeInvalidJSON, text: "malformed JSON: " + err.Error()}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return &apiError{status: http.StatusBadRequest, code: codeInvalidJSON, text: "the request body must be " + jsonKind(typ.Type)}
		}
		return errField(codeInvalidJSON, field, "must be "+jsonKind(typ.Type)+", not "+typ.Value)
	case errors.As(err, &big):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: codeBadRequest, text: fmt.Sprintf("the request body is larger than %d bytes", big.Limit)}
	}
	return &apiError{status: http.StatusBadRequest, code: codeInvalidJSON, text: err.Error()}
}

// jsonKind names the JSON form of a Go type, for messages.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a JSON value"
}

// pathID reads a positive integer path parameter; anything else is 400 BAD_REQUEST msg.
func pathID(r *http.Request, name string, msg msgID) (uint64, error) {
	id, err := strconv.ParseUint(chi.URLParam(r, name), 10, 64)
	if err != nil || id == 0 {
		return 0, errBadRequest(msg)
	}
	return id, nil
}

// queryGroupID reads the required group_id query parameter (API.md 3.3).
func queryGroupID(r *http.Request) (uint64, error) {
	s := r.URL.Query().Get("group_id")
	if s == "" {
		return 0, errBadRequest(msgGroupIDRequired)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, errBadRequest(msgGroupIDInvalid)
	}
	return id, nil
}

// pagination reads page and page_size (API.md 0.4): bad or missing values fall back to
// 1 and 15, page_size is capped at 1000.
func pagination(r *http.Request) (page, size int) {
	q := r.URL.Query()
	page, err := strconv.Atoi(q.Get("page"))
	if err != nil || page < 1 {
		page = 1
	}
	size, err = strconv.Atoi(q.Get("page_size"))
	if err != nil || size <= 0 {
		size = defaultPageSize
	}
	return page, min(size, maxPageSize)
}

// paginated is the data of a paginated list (API.md 0.4).
type paginated[T any] struct {
	Items      []T        `json:"items"`
	Pagination pageFigure `json:"pagination"`
}

type pageFigure struct {
	Page       int `json:"page"`
	PageSize   int `json:"page_size"`
	TotalItems int `json:"total_items"`
	TotalPages int `json:"total_pages"`
}

func newPage[T any](items []T, page, size, total int) paginated[T] {
	if items == nil {
		items = []T{}
	}
	return paginated[T]{Items: items, Pagination: pageFigure{
		Page: page, PageSize: size, TotalItems: total, TotalPages: (total + size - 1) / size,
	}}
}

// offset is the number of items before a page, saturated so huge page numbers cannot
// overflow.
func offset(page, size int) int {
	if page-1 > (1<<31)/size {
		return 1 << 31
	}
	return (page - 1) * size
}

// trimmedEmpty reports whether s holds nothing but white space.
func trimmedEmpty(s string) bool { return strings.TrimSpace(s) == "" }
