package httpapi

import (
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"gpt-load/domain"
	"gpt-load/events"
)

// openAPI serves the OpenAPI 3.1 document of the admin API (GET /api/openapi.json).
func (a *admin) openAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set(headerContentType, contentTypeJSON)
	w.Write(openAPIJSON())
}

var openAPIJSON = sync.OnceValue(func() []byte {
	b, err := json.Marshal(OpenAPI())
	if err != nil {
		panic("httpapi: OpenAPI document: " + err.Error())
	}
	return b
})

// schema is a JSON Schema (OpenAPI 3.1 dialect) as a JSON object.
type schema = map[string]any

func ref(name string) schema { return schema{"$ref": "#/components/schemas/" + name} }
func str(desc string) schema {
	s := schema{"type": "string"}
	if desc != "" {
		s["description"] = desc
	}
	return s
}
func integer(desc string) schema {
	s := schema{"type": "integer"}
	if desc != "" {
		s["description"] = desc
	}
	return s
}
func number() schema              { return schema{"type": "number"} }
func boolean() schema             { return schema{"type": "boolean"} }
func dateTime() schema            { return schema{"type": "string", "format": "date-time"} }
func arrayOf(items schema) schema { return schema{"type": "array", "items": items} }
func enum(values ...string) schema {
	return schema{"type": "string", "enum": values}
}
func nullable(s schema) schema {
	if t, ok := s["type"].(string); ok && len(s) <= 3 {
		c := schema{}
		for k, v := range s {
			c[k] = v
		}
		c["type"] = []string{t, "null"}
		return c
	}
	return schema{"anyOf": []schema{s, {"type": "null"}}}
}

// object is an object schema; fields whose name starts with "?" are optional, the others
// required.
func object(fields ...any) schema {
	props := schema{}
	var required []string
	for i := 0; i+1 < len(fields); i += 2 {
		name := fields[i].(string)
		if strings.HasPrefix(name, "?") {
			name = name[1:]
		} else {
			required = append(required, name)
		}
		props[name] = fields[i+1]
	}
	s := schema{"type": "object", "properties": props}
	if len(required) > 0 {
		s["required"] = required
	}
	return s
}

// apiOp documents one route.
type apiOp struct {
	method, path string
	tag, summary string
	description  string
	public       bool
	anyMethod    bool // the route answers every method
	params       []schema
	body         schema // JSON request body
	multipart    schema // multipart request body, alternative to body
	data         schema // data of the success envelope; nil: no data
	success      schema // a whole success response object, when it is not the envelope
	errors       []int
}

func pathParam(name, desc string) schema {
	return schema{"name": name, "in": "path", "required": true, "description": desc, "schema": schema{"type": "integer", "minimum": 1}}
}

func queryParam(name, desc string, s schema, required bool) schema {
	return schema{"name": name, "in": "query", "required": required, "description": desc, "schema": s}
}

var (
	groupIDParam    = pathParam("id", "group id")
	pageParams      = []schema{queryParam("page", "page number, from 1 (bad values mean 1)", integer(""), false), queryParam("page_size", "items per page, 15 by default, at most 1000", integer(""), false)}
	groupIDQuery    = queryParam("group_id", "group id", integer(""), true)
	keysBodySchema  = object("group_id", integer("group id"), "keys_text", str("keys: a JSON array of strings, or text separated by white space, ',' or ';'"))
	groupBodySchema = object("group_id", integer("group id"))
)

// logFilterParams are the filters of GET /api/logs and its export (API.md 6.2).
var logFilterParams = []schema{
	queryParam("group_name", "part of the serving group's name", str(""), false),
	queryParam("parent_group_name", "part of the aggregate's name", str(""), false),
	queryParam("model", "part of the model name", str(""), false),
	queryParam("error_contains", "part of the error message", str(""), false),
	queryParam("key_value", "exact upstream key (compared by hash)", str(""), false),
	queryParam("is_success", "true or false; other values are ignored", str(""), false),
	queryParam("request_type", "retry or final", str(""), false),
	queryParam("status_code", "exact status; other values are ignored", str(""), false),
	queryParam("source_ip", "exact client address", str(""), false),
	queryParam("proxy_key", "proxy key fingerprint (12 hex digits) or the key itself (ours)", str(""), false),
	queryParam("start_time", "RFC 3339, inclusive", str(""), false),
	queryParam("end_time", "RFC 3339, inclusive", str(""), false),
}

func with(params ...[]schema) []schema {
	var out []schema
	for _, p := range params {
		out = append(out, p...)
	}
	return out
}

// apiOps lists every route of the router, documented.
func apiOps() []apiOp {
	countResult := func(fields ...string) schema {
		var f []any
		for _, n := range fields {
			f = append(f, n, integer(""))
		}
		return object(f...)
	}
	return []apiOp{
		{method: "GET", path: "/health", tag: "system", summary: "Liveness and readiness", public: true,
			description: "200 while the node serves from a state caught up with the event log (status degraded while JetStream has been out of reach for less than a few seconds); " +
				"503 with Retry-After while it replays, once JetStream has been out of reach for longer, or while its projections fall further behind the log. Not the envelope.",
			success: object("status", enum("healthy", "degraded", "starting", "unhealthy"), "?reason", str("why it is unhealthy"), "timestamp", dateTime(), "uptime", str("Go duration"), "node", str(""),
				"projections", object("caught_up", boolean(), "applied_seq", integer(""), "?stream_seq", integer("the log's last sequence"), "?lag", integer("events not yet applied")),
				"?nats", object("?connection", str("CONNECTED, RECONNECTING, ..."), "jetstream", enum("ok", "unreachable"), "?error", str(""), "?unreachable_for", str("Go duration")),
			), errors: []int{503}},
		{method: "POST", path: "/api/auth/login", tag: "auth", summary: "Check an admin key", public: true,
			description: "No session is made: the dashboard keeps the key and sends it with each call. Not the envelope.",
			body:        object("auth_key", str("")), success: ref("LoginResult"), errors: []int{400, 401, 413, 429}},
		{method: "GET", path: "/api/integration/info", tag: "integration", summary: "Groups a proxy key may use", public: true,
			params: []schema{queryParam("key", "proxy key", str(""), true)}, data: arrayOf(ref("IntegrationGroup")), errors: []int{400}},
		{method: "GET", path: "/proxy/{group}/api/integration/info", tag: "integration", summary: "One group, if a proxy key may use it", public: true, anyMethod: true,
			description: "Answered for any method, before proxy authentication; only the query parameter key is read.",
			params:      []schema{{"name": "group", "in": "path", "required": true, "schema": str("group name")}, queryParam("key", "proxy key", str(""), true)},
			data:        arrayOf(ref("IntegrationGroup")), errors: []int{400, 404}},
		{method: "GET", path: "/api/openapi.json", tag: "system", summary: "This document", success: schema{"type": "object"}},
		{method: "GET", path: "/api/channel-types", tag: "groups", summary: "Supported channel types", data: arrayOf(ref("ChannelType"))},

		{method: "GET", path: "/api/groups", tag: "groups", summary: "Every group, by sort then id descending", data: arrayOf(ref("Group"))},
		{method: "POST", path: "/api/groups", tag: "groups", summary: "Create a group", body: ref("GroupInput"), data: ref("Group"), errors: []int{400, 409}},
		{method: "GET", path: "/api/groups/list", tag: "groups", summary: "Id, name and display name of every group, by id",
			data: arrayOf(object("id", integer(""), "name", str(""), "display_name", str("")))},
		{method: "GET", path: "/api/groups/config-options", tag: "groups", summary: "Settings a group may override, with the current system values",
			data: arrayOf(ref("ConfigOption"))},
		{method: "PUT", path: "/api/groups/reorder", tag: "groups", summary: "Set the display order",
			body: object("items", arrayOf(object("id", integer(""), "sort", integer("")))), errors: []int{400}},
		{method: "PUT", path: "/api/groups/{id}", tag: "groups", summary: "Update a group (absent or null fields are left as they are)",
			params: []schema{groupIDParam}, body: ref("GroupInput"), data: ref("Group"), errors: []int{400, 404, 409}},
		{method: "DELETE", path: "/api/groups/{id}", tag: "groups", summary: "Delete a group, its keys and its aggregate links",
			params: []schema{groupIDParam}, errors: []int{400, 404}},
		{method: "GET", path: "/api/groups/{id}/stats", tag: "groups", summary: "Key counts and request figures of a group",
			description: "Request figures are summed from the hourly figures of request logs (an aggregate's are its members' traffic through it). 500 DATABASE_ERROR when SQL fails.",
			params:      []schema{groupIDParam}, data: ref("GroupStats"), errors: []int{400, 404, 500}},
		{method: "POST", path: "/api/groups/{id}/copy", tag: "groups", summary: "Copy a group under a free name",
			description: "Keys of groups larger than 5000 keys are copied by the import task; when another task runs, the copy is made without its keys and the message says so.",
			params:      []schema{groupIDParam}, body: object("?copy_keys", enum("", "none", "valid_only", "all")),
			data: object("group", ref("Group")), errors: []int{400, 404}},
		{method: "GET", path: "/api/groups/{id}/sub-groups", tag: "aggregates", summary: "Members of an aggregate group",
			params: []schema{groupIDParam}, data: arrayOf(ref("SubGroup")), errors: []int{400, 404}},
		{method: "POST", path: "/api/groups/{id}/sub-groups", tag: "aggregates", summary: "Add members to an aggregate group",
			params: []schema{groupIDParam}, body: object("sub_groups", arrayOf(object("group_id", integer(""), "weight", integer("0 to 1000")))),
			errors: []int{400, 404}},
		{method: "PUT", path: "/api/groups/{id}/sub-groups/{subGroupId}/weight", tag: "aggregates", summary: "Change the weight of a member",
			params: []schema{groupIDParam, pathParam("subGroupId", "member group id")}, body: object("weight", integer("0 to 1000")), errors: []int{400, 404}},
		{method: "DELETE", path: "/api/groups/{id}/sub-groups/{subGroupId}", tag: "aggregates", summary: "Remove a member",
			params: []schema{groupIDParam, pathParam("subGroupId", "member group id")}, errors: []int{400, 404}},
		{method: "GET", path: "/api/groups/{id}/parent-aggregate-groups", tag: "aggregates", summary: "Aggregates a group belongs to",
			params: []schema{groupIDParam}, data: arrayOf(object("group_id", integer(""), "name", str(""), "display_name", str(""), "weight", integer(""))),
			errors: []int{400, 404}},

		{method: "GET", path: "/api/keys", tag: "keys", summary: "A page of a group's keys, by id descending",
			description: "key_value finds one key by its exact text; search matches a prefix of the key hash (hex) or a part of the masked value (first and last four characters around ****). " +
				"request_count and last_used_at come from the request logs in SQL (one query per page); when SQL cannot answer, the keys are listed without them.",
			params: with([]schema{groupIDQuery}, pageParams, []schema{
				queryParam("status", "only keys with this status", ref("KeyStatus"), false),
				queryParam("key_value", "exact key text", str(""), false),
				queryParam("search", "hash prefix or part of the masked value", str(""), false),
			}), data: object("items", arrayOf(ref("Key")), "pagination", ref("Pagination")), errors: []int{400, 404}},
		{method: "GET", path: "/api/keys/export", tag: "keys", summary: "A group's keys in clear, one per line (streamed text)",
			params:  []schema{groupIDQuery, queryParam("status", "which keys", enum("all", "active", "invalid"), false)},
			success: schema{"type": "string"}, errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/add-multiple", tag: "keys", summary: "Add up to 5000 keys", body: keysBodySchema,
			data: countResult("added_count", "ignored_count", "total_in_group"), errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/add-async", tag: "tasks", summary: "Import keys of any number as a task",
			description: "A JSON body (at most 256 MiB), or a multipart upload of a .txt file with a group_id field (at most 1 GiB), parsed as it arrives and never written to disk; the answer comes once the upload is read. Entries are at most 400 bytes.",
			body:        keysBodySchema, multipart: object("group_id", integer(""), "file", schema{"type": "string", "contentMediaType": "text/plain"}),
			data: ref("TaskStatus"), errors: []int{400, 404, 409}},
		{method: "POST", path: "/api/keys/delete-multiple", tag: "keys", summary: "Delete up to 5000 keys", body: keysBodySchema,
			data: countResult("deleted_count", "ignored_count", "total_in_group"), errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/delete-async", tag: "tasks", summary: "Delete keys of any number as a task", body: keysBodySchema,
			data: ref("TaskStatus"), errors: []int{400, 404, 409}},
		{method: "POST", path: "/api/keys/restore-multiple", tag: "keys", summary: "Restore up to 5000 invalid keys", body: keysBodySchema,
			data: countResult("restored_count", "ignored_count", "total_in_group"), errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/restore-all-invalid", tag: "keys", summary: "Restore every invalid key of a group", body: groupBodySchema, errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/clear-all-invalid", tag: "keys", summary: "Delete every invalid key of a group", body: groupBodySchema, errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/clear-all", tag: "keys", summary: "Delete every key of a group", body: groupBodySchema, errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/validate-group", tag: "tasks", summary: "Validate a group's keys as a task",
			description: "Disabled keys are left out. 503 when this node has no key validator.",
			body:        object("group_id", integer(""), "?status", ref("KeyStatus")), data: ref("TaskStatus"), errors: []int{400, 404, 409, 503}},
		{method: "POST", path: "/api/keys/test-multiple", tag: "keys", summary: "Validate up to 5000 keys now, in order",
			description: "Testing changes key state like any validation. 503 when this node has no key validator.",
			body:        keysBodySchema, data: object("results", arrayOf(ref("TestResult")), "total_duration", integer("milliseconds")),
			errors: []int{400, 404, 503}},
		{method: "POST", path: "/api/keys/disable-multiple", tag: "keys", summary: "Take keys out of rotation without deleting them (ours)",
			description: "Keys named by id and/or by value. A disabled key is never selected and never revalidated.",
			body:        ref("KeySelection"), data: countResult("disabled_count", "ignored_count", "total_in_group"), errors: []int{400, 404}},
		{method: "POST", path: "/api/keys/enable-multiple", tag: "keys", summary: "Put disabled keys back in rotation (ours)",
			body: ref("KeySelection"), data: countResult("enabled_count", "ignored_count", "total_in_group"), errors: []int{400, 404}},
		{method: "PUT", path: "/api/keys/{id}/notes", tag: "keys", summary: "Set the notes of a key",
			params: []schema{pathParam("id", "key id")}, body: object("notes", str("at most 255 characters")), errors: []int{400, 404}},

		{method: "GET", path: "/api/proxy-keys", tag: "proxy-keys", summary: "Named proxy keys, then gpt-load's comma-separated ones (ours)",
			description: "Named keys (source named) by id, with their use in the current UTC day and month and what is left of their quotas; then the global proxy_keys (source global) and each group's (source group), masked and read-only. The secret is never listed.",
			data:        arrayOf(ref("ProxyKey"))},
		{method: "POST", path: "/api/proxy-keys", tag: "proxy-keys", summary: "Create a named proxy key (ours)",
			description: "The answer holds the secret in key: this is the one time it is shown (only its SHA-256 is kept). Limits of 0 mean no limit. A bad field is a 400 naming it; a name in use is a 409.",
			body:        ref("ProxyKeyInput"), data: ref("ProxyKey"), errors: []int{400, 409}},
		{method: "PUT", path: "/api/proxy-keys/{id}", tag: "proxy-keys", summary: "Change a named proxy key (partial; \"enabled\": false disables it) (ours)",
			params: []schema{pathParam("id", "proxy key id")}, body: ref("ProxyKeyInput"), data: ref("ProxyKey"), errors: []int{400, 404, 409}},
		{method: "POST", path: "/api/proxy-keys/{id}/rotate", tag: "proxy-keys", summary: "Give a named proxy key a new secret (ours)",
			description: "The old secret stops working at once on every node; the answer holds the new one in key, shown this once. Usage and limits follow the key's id.",
			params:      []schema{pathParam("id", "proxy key id")}, data: ref("ProxyKey"), errors: []int{400, 404}},
		{method: "DELETE", path: "/api/proxy-keys/{id}", tag: "proxy-keys", summary: "Delete a named proxy key (ours)",
			params: []schema{pathParam("id", "proxy key id")}, errors: []int{400, 404}},

		{method: "POST", path: "/api/import/gptload", tag: "tasks", summary: "Import a gpt-load 1.x SQLite database as a task (ours)",
			description: "A multipart upload (at most 4 GiB) of the gpt-load SQLite file, with encryption_key (the ENCRYPTION_KEY gpt-load ran with, if any), overwrite (replace groups whose names exist here) and dry_run. " +
				"The encryption key is checked on a sample of keys before the answer: a wrong or missing one is a 400 and nothing is written. Group and key ids are kept. " +
				"The task (IMPORT_GPTLOAD) counts keys in processed/total; its result counts what came over: dry_run, settings_changed (names), groups_created, groups_replaced, groups_left_alone, groups_renumbered, keys_active, keys_invalid, keys_already_here, keys_renumbered, keys_in_groups_left_alone.",
			multipart: object("file", schema{"type": "string", "contentMediaType": "application/octet-stream"}, "?encryption_key", str(""),
				"?overwrite", boolean(), "?dry_run", boolean()),
			data: ref("TaskStatus"), errors: []int{400, 409, 413}},
		{method: "GET", path: "/api/tasks/status", tag: "tasks", summary: "The running task, or the last one of the past hour", data: ref("TaskStatus")},
		{method: "GET", path: "/api/settings", tag: "settings", summary: "System settings by category", data: arrayOf(ref("SettingCategory"))},
		{method: "PUT", path: "/api/settings", tag: "settings", summary: "Change settings, all or nothing",
			description: "Any subset of the settings. Every bad entry is named in one 400 VALIDATION_ERROR.",
			body:        schema{"type": "object", "additionalProperties": true}, errors: []int{400}},
		{method: "GET", path: "/api/dashboard/stats", tag: "dashboard", summary: "Key counts, request figures and security warnings",
			description: "rpm counts final request logs of the last 10 minutes against the 10 before; request_count, error_rate and token_count (ours) sum the hourly figures of standard groups over the last 24 hours against the 24 before. 500 DATABASE_ERROR when SQL fails.",
			data:        ref("DashboardStats"), errors: []int{500}},
		{method: "GET", path: "/api/dashboard/chart", tag: "dashboard", summary: "Successes and failures of the last 24 hours, hour by hour",
			description: "Labels are hour starts in the server's local time, oldest first, ending with the current hour. Without groupId, the sum over standard groups.",
			params:      []schema{queryParam("groupId", "only this group (aggregates allowed)", integer(""), false)},
			data:        ref("Chart"), errors: []int{400, 500}},
		{method: "GET", path: "/api/logs", tag: "logs", summary: "A page of request logs, newest first",
			description: "Counting stops at 10,000 matches (or just past the page asked for; with error_contains, which no index serves, one past the page): beyond that, total_items is a lower bound and pagination.total_is_lower_bound is true. " +
				"group_name and parent_group_name match the names groups have now (any case), resolved to group ids. 503 when this node has no SQL log store.",
			params: with(pageParams, logFilterParams), data: object("items", arrayOf(ref("RequestLog")), "pagination", ref("LogPagination")),
			errors: []int{500, 503}},
		{method: "GET", path: "/api/logs/export", tag: "logs", summary: "Export request logs as CSV (streamed)",
			description: "Default (and distinct=keys): gpt-load's key export, one line key_value,group_name,status_code per distinct key of the matching logs, from its newest log, keys in clear, by key hash. " +
				"format=csv-logs: the matching logs themselves, newest first, read in batches so memory stays bounded, key values masked. A failure before the first line is 500 {\"error\": ...}; a later one cuts the response.",
			params: with(logFilterParams, []schema{
				queryParam("format", "csv-keys (default) or csv-logs", enum("csv-keys", "csv-logs"), false),
				queryParam("distinct", "keys: the key export (gpt-load's spelling of the default)", enum("keys"), false),
			}), success: schema{"type": "string", "contentMediaType": "text/csv"}, errors: []int{400, 500, 503}},
		{method: "GET", path: "/api/usage", tag: "logs", summary: "Requests and tokens by hour, day, model, upstream key or proxy key (ours)",
			description: "From the hourly usage rollup, which is kept beyond the request logs' retention. requests counts a client's requests (retries left out), failures those that failed; tokens count every attempt. " +
				"from is rounded down to its hour; days begin at the server's local midnight; by=hour covers at most 31 days. 503 when this node has no SQL log store.",
			params: []schema{
				queryParam("group_id", "only this group (for an aggregate: the traffic that came through it)", integer(""), false),
				queryParam("proxy_key", "only this proxy key: its fingerprint (12 hex digits) or the key itself, reduced to its fingerprint", str(""), false),
				queryParam("proxy_key_id", "only this named proxy key, across its rotations", integer(""), false),
				queryParam("from", "RFC 3339; default to minus 24 hours", dateTime(), false),
				queryParam("to", "RFC 3339, exclusive; default now", dateTime(), false),
				queryParam("by", "grouping, hour by default", enum("hour", "day", "model", "key", "proxy_key"), false),
			}, data: ref("Usage"), errors: []int{400, 500, 503}},
		{method: "GET", path: "/api/dashboard/encryption-status", tag: "dashboard", summary: "Whether stored keys match ENCRYPTION_KEY", data: ref("EncryptionStatus")},
		{method: "GET", path: "/api/audit", tag: "audit", summary: "The event history, newest first (ours)",
			description: "Straight from the event log: who (actor, node), when, what, and what changed, with secrets masked.",
			params: with([]schema{
				queryParam("group_id", "only events about this group", integer(""), false),
				queryParam("type", "only these event types, comma-separated", str(strings.Join(events.Names(), ", ")), false),
			}, pageParams), data: object("items", arrayOf(ref("AuditItem")), "pagination", ref("Pagination")), errors: []int{400}},
	}
}

// components are the shared schemas.
func components() schema {
	channel := make([]string, 0)
	for _, c := range domain.ChannelTypes() {
		channel = append(channel, string(c))
	}
	return schema{
		"Error": object("code", str("stable error code: branch on it, not on the message"), "message", str("localized text"),
			"?fields", arrayOf(object("field", str(""), "message", str("")))),
		"LoginResult": object("success", boolean(), "message", str("")),
		"ChannelType": enum(channel...),
		"KeyStatus":   enum("active", "invalid"),
		"Upstream":    object("url", str("http:// or https://"), "weight", integer("0 or more")),
		"HeaderRule":  object("key", str(""), "value", str("may use ${CLIENT_IP}, ${GROUP_NAME}, ${API_KEY}, ${TIMESTAMP_MS}, ${TIMESTAMP_S}"), "action", enum("set", "remove")),
		"Group": object("id", integer(""), "name", str(""), "endpoint", str("app_url + /proxy/{name}"), "display_name", str(""),
			"description", str(""), "group_type", enum("standard", "aggregate"), "upstreams", arrayOf(ref("Upstream")),
			"channel_type", ref("ChannelType"), "sort", integer(""), "test_model", str(""), "validation_endpoint", str(""),
			"param_overrides", nullable(schema{"type": "object"}), "model_redirect_rules", schema{"type": "object", "additionalProperties": str("")},
			"model_redirect_strict", boolean(), "config", nullable(schema{"type": "object"}), "header_rules", arrayOf(ref("HeaderRule")),
			"proxy_keys", str("comma-separated"), "last_validated_at", nullable(dateTime()), "created_at", dateTime(), "updated_at", dateTime()),
		"GroupInput": object("?name", str(""), "?display_name", str(""), "?description", str(""), "?group_type", enum("standard", "aggregate"),
			"?upstreams", arrayOf(ref("Upstream")), "?channel_type", ref("ChannelType"), "?sort", integer(""), "?test_model", str(""),
			"?validation_endpoint", str(""), "?param_overrides", nullable(schema{"type": "object"}),
			"?model_redirect_rules", nullable(schema{"type": "object", "additionalProperties": str("")}), "?model_redirect_strict", boolean(),
			"?config", nullable(schema{"type": "object"}), "?header_rules", nullable(arrayOf(ref("HeaderRule"))), "?proxy_keys", str("")),
		"ConfigOption": object("key", str(""), "name", str(""), "description", str(""), "default_value", schema{"type": []string{"integer", "string", "boolean"}}),
		"SubGroup":     object("group", ref("Group"), "weight", integer(""), "total_keys", integer(""), "active_keys", integer(""), "invalid_keys", integer("")),
		"KeyCounts":    object("total_keys", integer(""), "active_keys", integer(""), "invalid_keys", integer("")),
		"RequestStats": object("total_requests", integer(""), "failed_requests", integer(""), "failure_rate", number()),
		"GroupStats": object("key_stats", ref("KeyCounts"), "stats_24_hour", ref("RequestStats"), "stats_7_day", ref("RequestStats"),
			"stats_30_day", ref("RequestStats")),
		"Key": object("id", integer(""), "key_value", str("in clear"), "key_hash", str("hex"), "group_id", integer(""),
			"status", ref("KeyStatus"), "notes", str(""), "request_count", integer("successful requests, from the request logs"),
			"failure_count", integer("consecutive counted failures"), "last_used_at", nullable(dateTime()),
			"created_at", dateTime(), "updated_at", dateTime(), "cooldown_until", nullable(dateTime()),
			"last_error", str("masked reason of the last counted failure"), "disabled", boolean()),
		"ProxyKeyUse": object("daily_tokens", nullable(integer("")), "monthly_tokens", nullable(integer(""))),
		"ProxyKey": object("?id", integer("absent for the unnamed keys"), "name", str(""), "source", enum("named", "global", "group"),
			"read_only", boolean(), "masked", str("the secret with its middle hidden"), "groups", arrayOf(str("group name")), "all_groups", schema{"type": "boolean", "description": "true: the key may use every group (a key whose groups were all deleted lists none and may use none)"},
			"enabled", boolean(), "expired", boolean(), "expires_at", nullable(dateTime()), "notes", str(""),
			"rpm", integer("requests per minute, 0: no limit"), "tpm", integer("tokens per minute, 0: no limit"),
			"daily_tokens", integer("tokens per UTC day, 0: no quota"), "monthly_tokens", integer("tokens per UTC month, 0: no quota"),
			"usage", ref("ProxyKeyUse"), "remaining", ref("ProxyKeyUse"), "?key", str("the secret: only in the answers of create and rotate"),
			"created_at", nullable(dateTime()), "updated_at", nullable(dateTime()), "rotated_at", nullable(dateTime()),
			"last_used_at", nullable(dateTime())),
		"ProxyKeyInput": object("?name", str("required on create, at most 100 characters, unique"), "?groups", nullable(arrayOf(str("group name"))),
			"?enabled", boolean(), "?expires_at", nullable(dateTime()), "?notes", str("at most 1000 characters"),
			"?rpm", integer(""), "?tpm", integer(""), "?daily_tokens", integer(""), "?monthly_tokens", integer("")),
		"KeySelection": object("group_id", integer(""), "?key_ids", arrayOf(integer("")), "?keys_text", str("")),
		"TestResult":   object("key_value", str(""), "is_valid", boolean(), "?error", str("")),
		"Pagination":   object("page", integer(""), "page_size", integer(""), "total_items", integer(""), "total_pages", integer("")),
		"TaskStatus": object("task_type", enum("", "KEY_VALIDATION", "KEY_IMPORT", "KEY_DELETE", "IMPORT_GPTLOAD"), "is_running", boolean(),
			"?group_name", str(""), "processed", integer(""), "total", integer(""), "?result", schema{"type": "object"},
			"?error", str(""), "started_at", dateTime(), "?finished_at", dateTime(), "?duration_seconds", number()),
		"Setting": object("key", str(""), "name", str(""), "value", schema{"type": []string{"integer", "string", "boolean"}},
			"type", enum("string", "int", "bool"), "default_value", str(""), "description", str(""), "category", str(""),
			"?min_value", integer(""), "?max_value", integer(""), "required", boolean()),
		"SettingCategory": object("category_name", str(""), "settings", arrayOf(ref("Setting"))),
		"StatCard":        object("value", number(), "?sub_value", integer(""), "?sub_value_tip", str(""), "trend", number(), "trend_is_growth", boolean()),
		"SecurityWarning": object("type", str(""), "message", str(""), "severity", enum("high", "medium"), "suggestion", str("")),
		"DashboardStats": object("key_count", ref("StatCard"), "rpm", ref("StatCard"), "request_count", ref("StatCard"),
			"error_rate", ref("StatCard"), "token_count", ref("StatCard"), "security_warnings", arrayOf(ref("SecurityWarning"))),
		"Chart": object("labels", arrayOf(dateTime()), "datasets", arrayOf(object("label", str(""), "data", arrayOf(integer("")), "color", str("")))),
		"RequestLog": object("id", str("UUID"), "timestamp", dateTime(), "group_id", integer(""), "group_name", str(""),
			"parent_group_id", integer("the aggregate, 0 when none"), "parent_group_name", str(""),
			"key_value", str("in clear; failed-to-decrypt when it cannot be decrypted; empty when no key was chosen"), "key_hash", str(""),
			"model", str(""), "is_success", boolean(), "source_ip", str(""), "status_code", integer(""), "request_path", str(""),
			"duration_ms", integer(""), "error_message", str(""), "user_agent", str(""), "request_type", enum("retry", "final"),
			"upstream_addr", str(""), "is_stream", boolean(), "request_body", str(""),
			"prompt_tokens", integer(""), "completion_tokens", integer(""), "total_tokens", integer(""),
			"proxy_key_fp", str("first 12 hex digits of the SHA-256 of the proxy key used"), "proxy_key_name", str("global or group")),
		"LogPagination": object("page", integer(""), "page_size", integer(""), "total_items", integer("exact, or a lower bound (see total_is_lower_bound)"),
			"total_pages", integer(""), "total_is_lower_bound", boolean()),
		"UsageFigures": object("requests", integer(""), "failures", integer(""), "prompt_tokens", integer(""), "completion_tokens", integer(""), "total_tokens", integer("")),
		"Usage": object("from", dateTime(), "to", dateTime(), "by", enum("hour", "day", "model", "key", "proxy_key"),
			"items", arrayOf(object("?time", dateTime(), "?model", str(""), "?group_id", integer(""), "?group_name", str(""), "?key_id", integer(""),
				"?proxy_key_fp", str("an unnamed proxy key"), "?proxy_key_id", integer("a named proxy key, across its rotations"), "?proxy_key_name", str(""), "requests", integer(""), "failures", integer(""),
				"prompt_tokens", integer(""), "completion_tokens", integer(""), "total_tokens", integer(""))),
			"totals", ref("UsageFigures")),
		"EncryptionStatus": object("has_mismatch", boolean(), "scenario_type", enum("", "data_not_encrypted", "key_not_configured", "key_mismatch"),
			"message", str(""), "suggestion", str("")),
		"IntegrationGroup": object("name", str(""), "display_name", str(""), "channel_type", str("the group's, or custom"), "path", str("")),
		"AuditItem": object("seq", integer("position in the event log"), "id", str("event id"), "time", dateTime(),
			"type", str("event type"), "actor", str("admin, system or proxy"), "node", str("node that recorded it"),
			"group_ids", arrayOf(integer("")), "details", schema{"type": "object", "description": "what changed; secrets masked"}),
	}
}

var statusText = map[int]string{
	400: "Bad input: BAD_REQUEST, INVALID_JSON, VALIDATION_FAILED or VALIDATION_ERROR, naming the field",
	401: "UNAUTHORIZED: missing or wrong admin key",
	404: "NOT_FOUND",
	409: "DUPLICATE_RESOURCE, CONFLICT or TASK_IN_PROGRESS",
	413: "The request body is larger than the route accepts (login 4 KiB, JSON 5 MiB, async key text 256 MiB, uploads 1 GiB)",
	429: "TOO_MANY_REQUESTS: too many admin requests in flight; retry after Retry-After",
	503: "SERVICE_UNAVAILABLE: the node is starting (with Retry-After), or cannot validate keys",
}

// OpenAPI is the OpenAPI 3.1 document of the admin API.
func OpenAPI() map[string]any {
	paths := map[string]schema{}
	for _, op := range apiOps() {
		item, okItem := paths[op.path]
		if !okItem {
			item = schema{}
			paths[op.path] = item
		}
		o := schema{"tags": []string{op.tag}, "summary": op.summary,
			"operationId": strings.ToLower(op.method) + operationName(op.path)}
		if op.description != "" {
			o["description"] = op.description
		}
		if len(op.params) > 0 {
			o["parameters"] = op.params
		}
		if op.public {
			o["security"] = []schema{}
		}
		if op.body != nil || op.multipart != nil {
			content := schema{}
			if op.body != nil {
				content["application/json"] = schema{"schema": op.body}
			}
			if op.multipart != nil {
				content["multipart/form-data"] = schema{"schema": op.multipart}
			}
			o["requestBody"] = schema{"required": true, "content": content}
		}
		responses := schema{}
		switch {
		case op.success != nil:
			mt := "application/json"
			if op.success["type"] == "string" {
				mt = "text/plain"
			}
			responses["200"] = schema{"description": "OK", "content": schema{mt: schema{"schema": op.success}}}
		default:
			env := object("code", schema{"type": "integer", "const": 0}, "message", str("localized"))
			if op.data != nil {
				env["properties"].(schema)["data"] = op.data
				env["required"] = []string{"code", "message", "data"}
			}
			responses["200"] = schema{"description": "Success envelope", "content": schema{"application/json": schema{"schema": env}}}
		}
		errs := op.errors
		if !op.public {
			errs = append(errs, 401, 413, 429)
		}
		for _, code := range errs {
			responses[strconv.Itoa(code)] = schema{"description": statusText[code], "content": schema{"application/json": schema{"schema": ref("Error")}}}
		}
		o["responses"] = responses
		if op.anyMethod {
			o["x-any-method"] = true
			post := maps.Clone(o)
			post["operationId"] = "post" + operationName(op.path)
			item["post"] = post
		}
		item[strings.ToLower(op.method)] = o
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": schema{
			"title":   "GPT-Load admin API",
			"version": "1",
			"description": "The management API of GPT-Load, compatible with gpt-load: same routes, field names and success envelope " +
				"({code: 0, message, data}); errors are {code: \"<STRING>\", message}. Messages are English unless Accept-Language asks " +
				"for zh-CN or ja-JP. Every change is an event in the log and is in force on every node.",
		},
		"tags": []schema{
			{"name": "auth"}, {"name": "groups"}, {"name": "aggregates"}, {"name": "keys"}, {"name": "tasks"},
			{"name": "settings"}, {"name": "dashboard"}, {"name": "logs"}, {"name": "integration"}, {"name": "audit"}, {"name": "system"},
		},
		"security": []schema{{"bearer": []string{}}, {"keyQuery": []string{}}, {"apiKey": []string{}}, {"googApiKey": []string{}}},
		"paths":    paths,
		"components": schema{
			"schemas": components(),
			"securitySchemes": schema{
				"bearer":     schema{"type": "http", "scheme": "bearer", "description": "AUTH_KEY"},
				"keyQuery":   schema{"type": "apiKey", "in": "query", "name": "key", "description": "AUTH_KEY, for download links"},
				"apiKey":     schema{"type": "apiKey", "in": "header", "name": "X-Api-Key"},
				"googApiKey": schema{"type": "apiKey", "in": "header", "name": "X-Goog-Api-Key"},
			},
		},
	}
}

// operationName turns a path into the tail of an operationId.
func operationName(path string) string {
	var b strings.Builder
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '-' || r == '.' || r == '{' || r == '}' }) {
		if part == "api" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}
