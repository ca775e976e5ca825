package config

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatch checks the two ways a change is seen: a change made after the
// caller read the file but before the watch started (since), and a change
// while it runs; rewriting the same content is not a change.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "meshgate.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a")
	since := FileSum(path) // the caller reads "a" ...
	write("b")             // ... and the file changes before the watch starts
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan struct{}, 10)
	if err := Watch(ctx, path, 20*time.Millisecond, since, func() { changes <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	expect := func(want bool, what string) {
		t.Helper()
		select {
		case <-changes:
			if !want {
				t.Fatalf("%s: reported as a change", what)
			}
		case <-time.After(500 * time.Millisecond):
			if want {
				t.Fatalf("%s: not reported", what)
			}
		}
	}
	expect(true, "a change before the watch started")
	write("b")
	expect(false, "the same content written again")
	write("c")
	expect(true, "a change while watching")

	// Without since, the content at the start is the reference.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	quiet := make(chan struct{}, 1)
	if err := Watch(ctx2, path, 20*time.Millisecond, nil, func() { quiet <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-quiet:
		t.Fatal("a watch without since reported the content it started with")
	case <-time.After(300 * time.Millisecond):
	}
}
