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
	if got := r.Discovery.Consul.Token; got != RedactedValue {
		t.Errorf("discovery.consul.token = %q, want %q", got, RedactedValue)
	}
	if got := c.Discovery.Consul.Token; got != "full-example-token" {
		t.Errorf("the original's token changed to %q", got)
	}
	if !reflect.DeepEqual(c, before) {
		t.Fatalf("Redacted modified the original")
	}
	// Apart from the secrets, the copy is equal...
	r.Listeners[0].TLS.KeyFile = c.Listeners[0].TLS.KeyFile
	r.Discovery.Consul.Token = c.Discovery.Consul.Token
	if !reflect.DeepEqual(r, c) {
		t.Fatalf("Redacted copy differs beyond key_file and token")
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

func TestRedactedConsulToken(t *testing.T) {
	t.Parallel()
	c, err := Load("testdata/valid/consul.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	if got := r.Discovery.Consul.Token; got != RedactedValue {
		t.Errorf("token = %q, want %q", got, RedactedValue)
	}
	if got := c.Discovery.Consul.Token; got != "3f9c1c2e-5b7a-4d2e-9a41-0c7d1f2b8e66" {
		t.Errorf("the original's token changed to %q", got)
	}
	assertNoSharing(t, reflect.ValueOf(c), reflect.ValueOf(r), "config")
	// Changing the copy leaves the original alone.
	r.Register.Meta["team"] = "changed"
	r.Discovery.Consul.Tags[0] = "changed"
	if c.Register.Meta["team"] != "checkout" || c.Discovery.Consul.Tags[0] != "production" {
		t.Errorf("the copy shares register.meta or discovery.consul.tags with the original")
	}

	// An empty token stays empty: "[redacted]" would claim there is one.
	c.Discovery.Consul.Token = ""
	if got := c.Redacted().Discovery.Consul.Token; got != "" {
		t.Errorf("empty token redacted to %q", got)
	}
	// Nothing to redact without discovery.
	c.Discovery.Consul = nil
	if got := c.Redacted(); got.Discovery.Consul != nil {
		t.Errorf("Redacted made up discovery.consul: %+v", got.Discovery.Consul)
	}
}
