package httpapi_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

var pathParamRE = regexp.MustCompile(`\{([^}]+)\}`)

// TestOpenAPIMatchesRouter walks the router: every registered route is documented, and
// every documented route is registered.
func TestOpenAPIMatchesRouter(t *testing.T) {
	t.Parallel()
	n := startNode(t, nodeOpts{})
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	r := n.do(http.MethodGet, "/api/openapi.json", nil)
	if r.code != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %v", r.code, r.header)
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}

	registered := map[string]bool{}
	err := chi.Walk(n.h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = strings.TrimSuffix(route, "/")
		if route == "" {
			route = "/"
		}
		registered[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for method, raw := range item {
			var op struct {
				AnyMethod bool `json:"x-any-method"`
			}
			json.Unmarshal(raw, &op)
			if op.AnyMethod {
				// Documented as GET and POST, registered for every method.
				for _, m := range []string{"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"} {
					documented[m+" "+path] = true
				}
				if !registered["PUT "+path] || !registered["DELETE "+path] {
					t.Errorf("%s is documented for any method but is not registered so", path)
				}
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	var missing, extra []string
	for r := range registered {
		if strings.HasPrefix(r, "QUERY ") {
			continue // chi registers the QUERY method with every catch-all route
		}
		if !documented[r] {
			missing = append(missing, r)
		}
	}
	for d := range documented {
		if !registered[d] {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("registered but not documented: %v", missing)
	}
	if len(extra) > 0 {
		t.Errorf("documented but not registered: %v", extra)
	}
	if len(registered) < 45 {
		t.Errorf("only %d routes walked", len(registered))
	}

	// Every operation: an id, its path parameters declared, responses, and references that
	// resolve.
	opIDs := map[string]bool{}
	refs := regexp.MustCompile(`"\$ref":"#/components/schemas/([^"]+)"`)
	for _, m := range refs.FindAllStringSubmatch(string(r.body), -1) {
		if _, ok := doc.Components.Schemas[m[1]]; !ok {
			t.Errorf("unresolved reference %s", m[1])
		}
	}
	for path, item := range doc.Paths {
		want := pathParamRE.FindAllStringSubmatch(path, -1)
		for method, raw := range item {
			var op struct {
				OperationID string `json:"operationId"`
				Parameters  []struct {
					Name string `json:"name"`
					In   string `json:"in"`
				} `json:"parameters"`
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if op.OperationID == "" || opIDs[op.OperationID] {
				t.Errorf("%s %s: operationId %q missing or repeated", method, path, op.OperationID)
			}
			opIDs[op.OperationID] = true
			if _, ok := op.Responses["200"]; !ok {
				t.Errorf("%s %s: no 200 response", method, path)
			}
			var declared []string
			for _, p := range op.Parameters {
				if p.In == "path" {
					declared = append(declared, p.Name)
				}
			}
			for _, w := range want {
				if !slices.Contains(declared, w[1]) {
					t.Errorf("%s %s: path parameter %s not declared", method, path, w[1])
				}
			}
		}
	}
}
