// Package policies loads, validates, hot-reloads and evaluates policy
// files: authentication (JWT, API keys), authorization (CEL rules), rate
// limits (local and Redis-backed), and request and response transforms.
// Each step is an http.Handler middleware compiled once per reload, run in
// the order authn → authz → rate limit → transforms.
//
// The package holds no code yet.
package policies
