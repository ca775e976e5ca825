// Package testproc holds what tests share around the processes and
// goroutines they run: locating the binary of a real external program
// (Consul, Jaeger) that tools/ensure.sh built, and collecting output that
// is written concurrently (a process's, a logger's).
package testproc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// Binary returns the path of tool name: the value of the environment
// variable env when set, else .bin/NAME at the repository root, which
// `tools/ensure.sh NAME` (and `make tools`) create.
func Binary(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no %s binary at %s: build it with `tools/ensure.sh %s` (make test does): %w", name, p, name, err)
	}
	return p, nil
}

// Output collects output written concurrently — a process's, which exec
// copies from its own goroutine, or a logger's — while a test reads it.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
