// Package deployments holds what meshgate ships besides its code: the
// embedded default configuration, the demo services (./demo) and the
// `make run` script (run.sh) that starts both.
package deployments

import _ "embed"

// DefaultConfigName is the file name of the embedded default configuration,
// used in error messages and admin views so that its problems read as
// "meshgate.default.yaml:LINE: field: message".
const DefaultConfigName = "meshgate.default.yaml"

// DefaultConfig is the YAML text of meshgate.default.yaml, compiled into the
// binary. `meshgate run` without --config (and without MESHGATE_CONFIG)
// loads it: an edge gateway on 127.0.0.1:8080 with the admin listener on
// 127.0.0.1:9901, in front of the demo services products, users and orders
// that `make run` starts on loopback. Callers must treat the slice as read
// only.
//
//go:embed meshgate.default.yaml
var DefaultConfig []byte
