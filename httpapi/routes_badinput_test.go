package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"gpt-load/httpapi"
	"gpt-load/projections/sqllog"
	"gpt-load/projections/sqlstore/sqlstoretest"
)

// The classes of bad input every route is given.
var (
	// badIDs go into every path parameter: none is a positive integer that names a thing.
	badIDs = []string{"abc", "-1", "0", "1.5", "99999999999999999999999", "%E5%90%8D%F0%9F%9A%80", "%00", "%1B%5B31m",
		"1%27%20OR%20%271%27=%271", "%3Cscript%3E", "999999"}
	// badStrings go into every string field and query parameter: empty, unicode, control
	// characters, injection strings, a huge value.
	badStrings = []string{"", " ", "名前🚀\u202e", "a\x00b\x1b[31m\r\n", "'; DROP TABLE groups; --", "<script>alert(1)</script>",
		"{{7*7}}${7*7}", "../../../etc/passwd", "\xff\xfe", strings.Repeat("x", 1<<20)}
)

// wrongTypes are JSON values of another type than a field of type typ, and huge ones.
func wrongTypes(typ string) []string {
	switch typ {
	case "string":
		return []string{`1`, `true`, `{}`, `[]`, `["a"]`}
	case "integer":
		return []string{`"1"`, `1.5`, `1e400`, `-1e30`, `true`, `{}`, `[1]`, `"名"`}
	case "number":
		return []string{`"1"`, `1e400`, `true`, `{}`, `[]`}
	case "boolean":
		return []string{`"true"`, `1`, `{}`, `[]`}
	case "array":
		return []string{`"a"`, `1`, `{}`, `true`}
	case "object":
		return []string{`"a"`, `1`, `[]`, `true`}
	}
	return nil
}

// inputlessRoutes take no path parameter, query parameter or body: their row is that
// junk in the query and a body are ignored, with the state unchanged.
var inputlessRoutes = map[string]bool{
	"GET /api/openapi.json": true, "GET /api/channel-types": true, "GET /api/groups": true, "GET /api/groups/list": true,
	"GET /api/groups/config-options": true, "GET /api/tasks/status": true, "GET /api/settings": true,
	"GET /api/dashboard/stats": true, "GET /api/dashboard/encryption-status": true, "GET /api/proxy-keys": true, "GET /metrics": true, "GET /health": true,
}

// TestBadInputOnEveryRoute walks every route of the router and gives each bad input of
// every class (bad ids in path parameters; wrong types, huge values, empty, unicode,
// control characters and injection strings in body fields and query parameters; a
// declared body over the route's limit). No answer is a 5xx; every 4xx leaves the state
// exactly as it was; a value of the wrong type is a 400 naming its field; every id that
// names nothing is a 4xx. A route that gets no row fails the test.
func TestBadInputOnEveryRoute(t *testing.T) {
	t.Parallel()
	// Wrong admin keys are part of the input (login): no back-off in this test.
	db := sqlstoretest.Migrated(t, sqlstoretest.DSN(t, "sqlite"))
	n := startNode(t, nodeOpts{deps: func(d *httpapi.Deps) {
		d.LoginThrottle.Free = 1 << 30
		d.Logs = sqllog.NewQueries(db)
	}})
	g := n.group("g")
	n.do(http.MethodPost, "/api/groups", `{"name":"agg","group_type":"aggregate","channel_type":"openai"}`).ok(t, nil)
	n.addKeys(g, "sk-key-0001")
	doc := httpapi.OpenAPI()
	paths := doc["paths"].(map[string]map[string]any)
	components := doc["components"].(map[string]any)["schemas"].(map[string]any)

	var routes []string
	err := chi.Walk(n.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routes = append(routes, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(routes)
	if len(routes) < 40 {
		t.Fatalf("walked %d routes: %v", len(routes), routes)
	}
	send := func(t *testing.T, method, target, body string) *response {
		t.Helper()
		var b any
		if body != "" {
			b = body
		}
		return n.do(method, target, b)
	}
	// check sends one bad input and holds the answer to the rules above.
	check := func(t *testing.T, method, target, body, field string, mustName bool) {
		t.Helper()
		before := n.encoded()
		r := send(t, method, target, body)
		if r.code >= 500 {
			t.Fatalf("%s %s %.80q: %d %.300s", method, target, body, r.code, r.body)
		}
		if r.code >= 400 {
			if after := n.encoded(); string(after) != string(before) {
				t.Errorf("%s %s %.80q: %d, yet the state changed", method, target, body, r.code)
			}
			if len(r.body) == 0 {
				t.Errorf("%s %s: %d without a message", method, target, r.code)
			}
		}
		if mustName {
			e := r.env(t)
			named := r.code == 400 && strings.Contains(e.Message, field)
			for _, f := range e.Fields {
				named = named || strings.HasPrefix(f.Field, field)
			}
			if !named {
				t.Errorf("%s %s %.80q: %d %.200s, want a 400 naming %s", method, target, body, r.code, r.body, field)
			}
		}
	}

	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		t.Run(route, func(t *testing.T) {
			rows := 0
			op, _ := paths[strings.TrimSuffix(pattern, "/*")][strings.ToLower(method)].(map[string]any)
			// A concrete URL with good ids: the group, the aggregate's member, the key.
			good := strings.NewReplacer("{id}", fmt.Sprint(g), "{subGroupId}", fmt.Sprint(g), "{group}", "g", "/*", "/v1/models")
			target := good.Replace(pattern)
			if strings.Contains(pattern, "sub-groups") || strings.Contains(pattern, "parent-aggregate") {
				target = strings.Replace(target, fmt.Sprint("/groups/", g), fmt.Sprint("/groups/", g+1), 1)
			}
			if strings.HasPrefix(pattern, "/api/keys/{id}") {
				target = strings.Replace(target, fmt.Sprint(g), fmt.Sprint(n.keyID(g, "sk-key-0001")), 1)
			}
			// Path parameters.
			for _, p := range []string{"{id}", "{subGroupId}"} {
				if !strings.Contains(pattern, p) {
					continue
				}
				for _, bad := range badIDs {
					u := strings.Replace(pattern, p, bad, 1)
					u = good.Replace(u)
					r := send(t, method, u, `{}`)
					if r.code < 400 || r.code >= 500 {
						t.Errorf("%s %s: %d %.200s, want a 4xx", method, u, r.code, r.body)
					}
					rows++
				}
			}
			// The group name of the proxy routes.
			if strings.Contains(pattern, "{group}") {
				for _, bad := range append(badIDs, "no-such-group") {
					u := strings.Replace(pattern, "{group}", bad, 1)
					check(t, method, good.Replace(u), "", "", false)
					rows++
				}
			}
			// A declared body over the route's limit is refused before it is read.
			if pattern != "/health" {
				req := httptest.NewRequest(method, target, strings.NewReader("{}"))
				req.ContentLength = 5 << 30 // over every limit, uploads included
				req.Header.Set("Authorization", "Bearer "+testAuthKey)
				rec := httptest.NewRecorder()
				n.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusRequestEntityTooLarge {
					t.Errorf("%s %s with 5 GiB declared: %d, want 413", method, target, rec.Code)
				}
				// Not a row of the route's own: every route gets it.
			}
			// Query parameters.
			if params, found := op["parameters"].([]schema); found {
				for _, p := range params {
					if p["in"] != "query" || p["name"] == "key" && op["security"] == nil {
						continue // the admin key of download links is the test's own
					}
					for _, bad := range append(badStrings, "-1", "1e400", "99999999999999999999999") {
						check(t, method, target+"?"+url.Values{p["name"].(string): {bad}}.Encode(), "", "", false)
						rows++
					}
				}
			}
			// JSON body fields.
			if body := jsonBodySchema(op, components); body != nil {
				check(t, method, target, `not json`, "", false)
				check(t, method, target, `[]`, "", false)
				check(t, method, target, `{"twice":1,"twice":2}`, "twice", true)
				rows += 3
				props, _ := body["properties"].(map[string]any)
				for name, ps := range props {
					typ := schemaType(ps.(map[string]any), components)
					for _, v := range wrongTypes(typ) {
						check(t, method, target, fmt.Sprintf(`{%q:%s}`, name, v), name, true)
						rows++
					}
					if typ == "string" {
						for _, s := range badStrings {
							check(t, method, target, fmt.Sprintf(`{%q:%q}`, name, s), name, false)
							rows++
						}
					}
				}
			}
			// Multipart uploads: a broken envelope, then every form field given each bad
			// string (or a wrong type) beside a file of junk.
			if form := multipartSchema(op, components); form != nil {
				ct := func(t *testing.T, contentType, body string) {
					t.Helper()
					before := n.encoded()
					r := n.send(method, target, body, "Authorization", "Bearer "+testAuthKey, "Content-Type", contentType)
					if r.code < 400 || r.code >= 500 {
						t.Errorf("%s %s multipart %.80q: %d %.200s, want a 4xx", method, target, body, r.code, r.body)
					}
					if string(n.encoded()) != string(before) {
						t.Errorf("%s %s multipart %.80q: the state changed", method, target, body)
					}
					rows++
				}
				ct(t, "multipart/form-data", "x")
				ct(t, "multipart/form-data; boundary=zz", "--zz\r\nbroken")
				props, _ := form["properties"].(map[string]any)
				for name, ps := range props {
					if name == "file" {
						continue
					}
					values := badStrings
					if typ := schemaType(ps.(map[string]any), components); typ != "string" {
						values = append(values, "1.5", "-1", "true1", "99999999999999999999999")
					}
					for _, v := range values {
						contentType, body := multipartBody(t, map[string]string{name: v}, "junk\x00\xff.bin", "not what it should be\x00")
						ct(t, contentType, body)
					}
				}
			}
			if inputlessRoutes[route] {
				check(t, method, target+"?id=-1&page=%00&x='%20OR%201=1", `{"x":1}`, "", false)
				rows++
			}
			if rows == 0 {
				t.Fatalf("no bad-input row for %s: give it one (path parameter, query parameter, body schema in openapi.go, or inputlessRoutes)", route)
			}
		})
	}
}

type schema = map[string]any

// multipartSchema is the multipart/form-data body schema of an operation.
func multipartSchema(op map[string]any, components map[string]any) map[string]any {
	rb, _ := op["requestBody"].(map[string]any)
	content, _ := rb["content"].(map[string]any)
	mt, _ := content["multipart/form-data"].(map[string]any)
	s, _ := mt["schema"].(map[string]any)
	return resolve(s, components)
}

// multipartBody is a form with the given fields and one file.
func multipartBody(t *testing.T, fields map[string]string, fileName, content string) (contentType, body string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	fw, err := mw.CreateFormFile("file", fileName)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(fw, content)
	mw.Close()
	return mw.FormDataContentType(), b.String()
}

// jsonBodySchema is the JSON request body schema of an operation, references resolved.
func jsonBodySchema(op map[string]any, components map[string]any) map[string]any {
	rb, _ := op["requestBody"].(map[string]any)
	content, _ := rb["content"].(map[string]any)
	mt, _ := content["application/json"].(map[string]any)
	s, _ := mt["schema"].(map[string]any)
	return resolve(s, components)
}

func resolve(s map[string]any, components map[string]any) map[string]any {
	if r, ok := s["$ref"].(string); ok {
		c, _ := components[strings.TrimPrefix(r, "#/components/schemas/")].(map[string]any)
		return c
	}
	return s
}

// schemaType is the JSON type of a schema ("" when it allows several).
func schemaType(s map[string]any, components map[string]any) string {
	s = resolve(s, components)
	switch t := s["type"].(type) {
	case string:
		return t
	}
	return ""
}
