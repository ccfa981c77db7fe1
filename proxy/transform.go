package proxy

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"gpt-load/domain"
	"gpt-load/projections"
	"gpt-load/proxy/channel"
)

// headerVars are the values of the variables a header rule may use (API.md 2.5).
type headerVars struct {
	clientIP string
	group    string
	key      string
	now      time.Time
}

func (v *headerVars) lookup(name string) (string, bool) {
	switch name {
	case "CLIENT_IP":
		return v.clientIP, true
	case "GROUP_NAME":
		return v.group, true
	case "API_KEY":
		return v.key, true
	case "TIMESTAMP_MS":
		return strconv.FormatInt(v.now.UnixMilli(), 10), true
	case "TIMESTAMP_S":
		return strconv.FormatInt(v.now.Unix(), 10), true
	}
	return "", false
}

// expandHeaderValue substitutes the variables of a header rule's value; unknown variables
// stay as written.
func expandHeaderValue(s string, v *headerVars) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+2:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		name := s[i+2 : i+2+j]
		b.WriteString(s[:i])
		if val, ok := v.lookup(name); ok {
			b.WriteString(val)
		} else {
			b.WriteString(s[i : i+3+j])
		}
		s = s[i+3+j:]
	}
}

// validHeaderValue reports whether a header value can be sent: no CR, LF or NUL.
func validHeaderValue(s string) bool {
	return !strings.ContainsAny(s, "\r\n\x00")
}

// applyHeaderRules applies a group's header rules to an upstream request, after the key
// was put on it (so a rule can override the injected auth header). A value that would be
// invalid after substitution is not sent; "Host" sets the request's host.
func applyHeaderRules(req *http.Request, rules []domain.HeaderRule, v headerVars) {
	for _, r := range rules {
		key := http.CanonicalHeaderKey(strings.TrimSpace(r.Key))
		if key == "" {
			continue
		}
		switch r.Action {
		case domain.HeaderActionSet:
			val := expandHeaderValue(r.Value, &v)
			if !validHeaderValue(val) {
				continue
			}
			if key == "Host" {
				req.Host = val
				continue
			}
			req.Header[key] = []string{val}
		case domain.HeaderActionRemove:
			if key == "Host" {
				continue
			}
			req.Header.Del(key)
		}
	}
}

// isModelList reports a model list request path (API.md 7.5).
func isModelList(path string) bool {
	return strings.HasSuffix(path, "/v1/models") || strings.HasSuffix(path, "/v1beta/models") ||
		strings.Contains(path, "/v1beta/openai/v1/models")
}

// emptyAnswer reports a 200 whose answer holds nothing: no choices (OpenAI, Azure,
// Gemini's OpenAI path), no output (Responses), no content (Anthropic), no candidates
// (Gemini).
func emptyAnswer(ct domain.ChannelType, path string, body []byte) bool {
	if !channel.IsObject(body) {
		return len(bytes.TrimSpace(body)) == 0
	}
	switch ct {
	case domain.ChannelAnthropic:
		return channel.IsEmptyArrayOrMissing(body, "content")
	case domain.ChannelOpenAIResponse:
		return channel.IsEmptyArrayOrMissing(body, "output")
	case domain.ChannelGemini:
		if !channel.IsGeminiOpenAI(path) {
			return channel.IsEmptyArrayOrMissing(body, "candidates")
		}
	}
	return channel.IsEmptyArrayOrMissing(body, "choices")
}

// maxModelList bounds a model list read for rewriting.
const maxModelList = 32 << 20

// answerModelList rewrites a model list with the group's redirect rules (API.md 7.5) and
// answers it with status 200.
func (p *request) answerModelList(resp *http.Response, key poolKey, upAddr string) {
	defer resp.Body.Close()
	raw, err := decompressed(resp)
	if err != nil {
		if p.r.Context().Err() != nil {
			p.logOwn(499, "client closed the request", key)
			return
		}
		p.writeJSON(http.StatusInternalServerError, []byte(`{"error":"Failed to read response"}`))
		p.logRecord(domain.RequestFinal, key, http.StatusInternalServerError, false, "Failed to read response", upAddr, channel.Usage{})
		return
	}
	out, err := rewriteModelList(raw, p.serving.ModelRedirectRules, p.serving.ModelRedirectStrict,
		p.serving.ChannelType == domain.ChannelGemini && !channel.IsGeminiOpenAI(p.rest),
		p.r.URL.Query().Get("pageToken") == "")
	if err != nil {
		p.writeJSON(http.StatusInternalServerError, []byte(`{"error":"Failed to process response"}`))
		p.logRecord(domain.RequestFinal, key, http.StatusInternalServerError, false, "Failed to process response", upAddr, channel.Usage{})
		return
	}
	p.writeJSON(http.StatusOK, out)
	p.logRecord(domain.RequestFinal, key, http.StatusOK, true, "", upAddr, channel.Usage{})
}

func (p *request) writeJSON(status int, body []byte) {
	h := p.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	p.w.WriteHeader(status)
	p.w.Write(body)
}

func decompressed(resp *http.Response) ([]byte, error) {
	var r io.Reader = io.LimitReader(resp.Body, maxModelList)
	switch strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding"))) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		r = zr
	case "deflate":
		r = flate.NewReader(r)
	default:
		return nil, fmt.Errorf("unsupported content encoding %q", resp.Header.Get("Content-Encoding"))
	}
	return io.ReadAll(io.LimitReader(r, maxModelList))
}

// rewriteModelList applies API.md 7.5 to an OpenAI-style {"data": [...]} or a Gemini
// native {"models": [...]} list.
func rewriteModelList(raw []byte, rules map[string]string, strict, gemini, firstPage bool) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	sources := make([]string, 0, len(rules))
	for src := range rules {
		sources = append(sources, src)
	}
	slices.Sort(sources)
	if gemini {
		list, ok := doc["models"]
		if !ok {
			return raw, nil
		}
		var models []map[string]any
		if err := json.Unmarshal(list, &models); err != nil {
			return nil, err
		}
		configured := make([]map[string]any, 0, len(sources))
		for _, src := range sources {
			name := src
			if !strings.HasPrefix(name, "models/") {
				name = "models/" + name
			}
			configured = append(configured, map[string]any{
				"name": name, "displayName": strings.TrimPrefix(src, "models/"),
				"supportedGenerationMethods": []string{"generateContent"},
			})
		}
		switch {
		case strict:
			models = configured
			delete(doc, "nextPageToken")
		case firstPage:
			have := map[string]bool{}
			for _, m := range models {
				if n, ok := m["name"].(string); ok {
					have[strings.TrimPrefix(n, "models/")] = true
				}
			}
			for _, c := range configured {
				if !have[strings.TrimPrefix(c["name"].(string), "models/")] {
					models = append(models, c)
				}
			}
		default:
			return raw, nil
		}
		b, err := json.Marshal(models)
		if err != nil {
			return nil, err
		}
		doc["models"] = b
		return json.Marshal(doc)
	}
	list, ok := doc["data"]
	if !ok {
		return raw, nil
	}
	var models []map[string]any
	if err := json.Unmarshal(list, &models); err != nil {
		return raw, nil
	}
	configured := make([]map[string]any, 0, len(sources))
	for _, src := range sources {
		configured = append(configured, map[string]any{"id": src, "object": "model", "created": 0, "owned_by": "system"})
	}
	if strict {
		models = configured
	} else {
		have := map[string]bool{}
		for _, m := range models {
			if id, ok := m["id"].(string); ok {
				have[id] = true
			}
		}
		for _, c := range configured {
			if !have[c["id"].(string)] {
				models = append(models, c)
			}
		}
	}
	b, err := json.Marshal(models)
	if err != nil {
		return nil, err
	}
	doc["data"] = b
	return json.Marshal(doc)
}

// integrationInfo serves /proxy/{group}/api/integration/info?key=... (API.md 1.5): the
// group as a client configures it, for a key allowed to use it.
func (h *Handler) integrationInfo(w http.ResponseWriter, r *http.Request, v *projections.View, name string) {
	key := r.URL.Query().Get("key")
	if key == "" {
		writeEnvelopeError(w, http.StatusBadRequest, "VALIDATION_FAILED", "Proxy key is required")
		return
	}
	// An unknown group gets the answer of a key not allowed in the group, so that group
	// names cannot be probed.
	gv, ok := v.GroupByName(name)
	var allowed []digest
	if ok {
		allowed = h.groups.state(gv).keys
	}
	d := digestOf(key)
	if keyAllowed(&d, allowed, h.groups.globalKeys(v)) < 0 || !ok {
		writeEnvelopeError(w, http.StatusBadRequest, "VALIDATION_FAILED", "Invalid or unauthorized proxy key")
		return
	}
	ct, path := string(gv.ChannelType), ""
	if (gv.ChannelType == domain.ChannelOpenAI || gv.ChannelType == domain.ChannelOpenAIResponse) &&
		gv.EffectiveValidationEndpoint() != gv.ChannelType.DefaultValidationEndpoint() {
		ct, path = "custom", gv.ValidationEndpoint
	}
	body, _ := json.Marshal(map[string]any{
		"code": 0, "message": "Success",
		"data": []map[string]string{{"name": gv.Name, "display_name": gv.DisplayName, "channel_type": ct, "path": path}},
	})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func writeEnvelopeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]string{"code": code, "message": msg})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}
