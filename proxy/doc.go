// Package proxy is the data plane: the http.Handler for /proxy/{group}/{native path}. It
// reads groups, effective configuration and key pools from the lock-free views of package
// projections, picks a key, forwards the request to the provider (OpenAI, Gemini,
// Anthropic, Azure OpenAI) with retries on other keys, streams responses chunk by chunk,
// and records key-health facts and request logs as events without making a client wait.
package proxy
