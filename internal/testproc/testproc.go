// Package testproc holds what tests share around the processes and
// goroutines they run: locating the binary of a real external program
// (Consul, Jaeger) that tools/ensure.sh built, and collecting output that
// is written concurrently (a process's, a logger's), and sending requests
// Go's HTTP client would not send as they are.
package testproc

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
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

// Tail returns the last n bytes written, where a crash shows.
func (o *Output) Tail(n int) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	b := o.b.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// RawGet sends "GET path HTTP/1.1" to addr with the path exactly as given
// (Go's client would clean or escape some of the paths tests need, such
// as "/public/../admin" or "/admin%2F..") and returns the status and body.
func RawGet(addr, path string) (int, string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}
