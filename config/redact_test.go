package config

import (
	"reflect"
	"testing"
)

func TestRedacted(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	before, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	if got := r.Listeners[0].TLS.KeyFile; got != RedactedValue {
		t.Errorf("key_file = %q, want %q", got, RedactedValue)
	}
	if got := r.Listeners[0].TLS.CertFile; got != c.Listeners[0].TLS.CertFile {
		t.Errorf("cert_file changed to %q", got)
	}
	if !reflect.DeepEqual(c, before) {
		t.Fatalf("Redacted modified the original")
	}
	// Apart from the key file, the copy is equal...
	r.Listeners[0].TLS.KeyFile = c.Listeners[0].TLS.KeyFile
	if !reflect.DeepEqual(r, c) {
		t.Fatalf("Redacted copy differs beyond key_file")
	}
	// ...and shares no memory with the original.
	assertNoSharing(t, reflect.ValueOf(c), reflect.ValueOf(r), "config")

	if (*Config)(nil).Redacted() != nil {
		t.Errorf("nil.Redacted() != nil")
	}
}

// assertNoSharing fails when a and b (equal in shape) share a pointer,
// slice backing array or map.
func assertNoSharing(t *testing.T, a, b reflect.Value, path string) {
	t.Helper()
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() {
			return
		}
		if a.Pointer() == b.Pointer() {
			t.Errorf("%s: pointer shared", path)
		}
		assertNoSharing(t, a.Elem(), b.Elem(), path)
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			t.Errorf("%s: slice shared", path)
		}
		for i := range a.Len() {
			assertNoSharing(t, a.Index(i), b.Index(i), path+"[]")
		}
	case reflect.Map:
		if !a.IsNil() && a.Pointer() == b.Pointer() {
			t.Errorf("%s: map shared", path)
		}
		for _, k := range a.MapKeys() {
			assertNoSharing(t, a.MapIndex(k), b.MapIndex(k), path+"."+k.String())
		}
	case reflect.Struct:
		for i := range a.NumField() {
			assertNoSharing(t, a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)
		}
	}
}
