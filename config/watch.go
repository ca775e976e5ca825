package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls changed each time the content of the file at path changes,
// until ctx is done. It watches the file's directory, not the file, so
// editors that save by renaming and Kubernetes ConfigMap symlink swaps are
// seen; bursts of events within debounce coalesce into one call, and
// events that leave the content as it was are skipped.
//
// since is the FileSum of the content the caller loaded, taken before it
// read the file: a change made between that read and the start of the
// watch is reported at once rather than missed. nil: the content when the
// watch starts.
func Watch(ctx context.Context, path string, debounce time.Duration, since []byte, changed func()) error {
	return watch(ctx, filepath.Dir(path), debounce, func() []byte { return FileSum(path) }, since, changed)
}

// WatchDir is Watch for the YAML files (*.yaml, *.yml) of a directory, such
// as the policy directory: a file added, removed or changed calls changed.
// since is a DirSum, as for Watch.
func WatchDir(ctx context.Context, dir string, debounce time.Duration, since []byte, changed func()) error {
	return watch(ctx, dir, debounce, func() []byte { return DirSum(dir) }, since, changed)
}

// watch calls changed when sum changes after events in dir, or differs
// from since when the watch starts.
func watch(ctx context.Context, dir string, debounce time.Duration, sum func() []byte, since []byte, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	// Taken once the directory is watched: a later change is an event.
	last := sum()
	stale := since != nil && !bytes.Equal(since, last)
	go func() {
		defer w.Close()
		if stale {
			changed()
		}
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				// Any event in the directory may be the file changing
				// behind a symlink; the content check below filters.
				_ = ev
				if timer == nil {
					timer = time.NewTimer(debounce)
				} else {
					timer.Reset(debounce)
				}
				fire = timer.C
			case <-w.Errors:
				// Errors (queue overflow) are followed by a content check.
				if timer == nil {
					timer = time.NewTimer(debounce)
				} else {
					timer.Reset(debounce)
				}
				fire = timer.C
			case <-fire:
				fire = nil
				if now := sum(); !bytes.Equal(now, last) {
					last = now
					changed()
				}
			}
		}
	}()
	return nil
}

// FileSum hashes the file's content; a missing file hashes as nil.
func FileSum(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(b)
	return s[:]
}

// DirSum hashes the names and contents of the YAML files of dir.
func DirSum(dir string) []byte {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	h := sha256.New()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		h.Write([]byte(name))
		h.Write([]byte{0})
		h.Write(FileSum(filepath.Join(dir, name)))
	}
	return h.Sum(nil)
}
