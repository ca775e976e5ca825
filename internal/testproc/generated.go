package testproc

import (
	"bytes"
	"os"
	"testing"
)

// CheckGenerated compares a generated file committed at path (a JSON
// Schema) with what the code generates now, got. With update it rewrites
// the file instead. A stale file fails the test and says to run make
// schema.
func CheckGenerated(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make schema)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale; run make schema", path)
	}
}
