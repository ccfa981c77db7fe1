// Package proxy is the data plane: the http.Handler for /proxy/{group}/{native path}. It
// reads groups, effective configuration and key pools from the lock-free views of package
// projections, picks a key, forwards the request to the provider (OpenAI, Gemini,
// Anthropic, Azure OpenAI) with retries on other keys, streams responses chunk by chunk,
// and records key-health facts and request logs as events without making a client wait.
//
// One request goes through these steps:
//
//   - the concurrency cap (MAX_CONCURRENT_REQUESTS: over it, 429 with Retry-After);
//   - the client's proxy key, from ?key=, Authorization: Bearer, X-Api-Key,
//     X-Goog-Api-Key or Api-Key, compared in constant time with the group's and the global
//     proxy keys, and never sent upstream;
//   - for an aggregate, a member chosen by smooth weighted round robin among those with a
//     usable key;
//   - the body, read once (bounded, 413 beyond), with param_overrides and
//     model_redirect_rules applied;
//   - attempts, each with a fresh key and upstream: nothing is written to the client
//     before an attempt is accepted. An answer that blames the key (401, 403, an invalid
//     key message: counted toward blacklist_threshold; 429 or quota: the key rests until
//     Retry-After) always tries another key; other statuses try another key when
//     failover_status_codes names them, and a 5xx or transport failure tries another
//     upstream first without blaming the key. Anything else is the answer.
//   - the answer relayed as it comes, SSE flushed event by event, with its token usage
//     read on the way into the request log.
//
// Key-health facts go to the event log from a goroutine of their own; a key that fails
// is also kept out of this node's rotation for a few seconds, until its fact has come back
// through the log and the projection decides.
package proxy
