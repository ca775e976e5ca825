package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/meshgate/meshgate/config"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStaticSnapshot(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	snap := StaticSnapshot(map[string]config.Service{
		"products": {Instances: []config.Instance{
			{ID: "p-2", Address: "10.0.0.2", Port: 80, Weight: 3, Tags: []string{"v2"}, Meta: map[string]string{"zone": "b"}},
			{Address: "10.0.0.1", Port: 80},
			{ID: "p-3", Address: "::1", Port: 8080, Health: "critical"},
		}},
		"empty": {},
	}, now)
	if snap.Source != "static" || !snap.Created.Equal(now) {
		t.Errorf("source %q created %v", snap.Source, snap.Created)
	}
	p := snap.Service("products")
	if p == nil || len(p.Instances) != 3 {
		t.Fatalf("products = %+v", p)
	}
	// Sorted by ID: "10.0.0.1:80" < "p-2" < "p-3".
	want := []struct {
		id, hostPort string
		weight       int
		health       Health
	}{
		{"10.0.0.1:80", "10.0.0.1:80", 1, Passing},
		{"p-2", "10.0.0.2:80", 3, Passing},
		{"p-3", "[::1]:8080", 1, Critical},
	}
	for i, w := range want {
		in := p.Instances[i]
		if in.ID != w.id || in.HostPort != w.hostPort || in.Weight != w.weight || in.Health != w.health || in.Service != "products" || in.Source != "static" {
			t.Errorf("instance %d = %+v, want %+v", i, in, w)
		}
	}
	if e := snap.Service("empty"); e == nil || len(e.Instances) != 0 {
		t.Errorf("empty service = %+v", e)
	}
	if snap.Service("missing") != nil {
		t.Error("unknown service found")
	}
	var nilSnap *Snapshot
	if nilSnap.Service("x") != nil {
		t.Error("nil snapshot returned a service")
	}
}

func TestStorePublishAndNotify(t *testing.T) {
	t.Parallel()
	s := NewStore()
	if s.Load() != nil {
		t.Fatal("new store is not empty")
	}
	select {
	case <-s.Ready():
		t.Fatal("ready before the first snapshot")
	default:
	}
	a, b := NewSnapshot("t", nil, time.Now()), NewSnapshot("t", nil, time.Now())
	s.Publish(a)
	s.Publish(b) // coalesces with the first notification
	if s.Load() != b || a.Version != 1 || b.Version != 2 {
		t.Fatalf("load %p versions %d %d", s.Load(), a.Version, b.Version)
	}
	<-s.Ready()
	<-s.Updates()
	select {
	case <-s.Updates():
		t.Fatal("two publications produced two notifications; want them coalesced")
	default:
	}
}

func TestStaticRunPublishesAndStops(t *testing.T) {
	t.Parallel()
	s := NewStore()
	src := NewStatic(map[string]config.Service{"a": {Instances: []config.Instance{{Address: "127.0.0.1", Port: 1}}}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, s.Publish) }()
	select {
	case <-s.Ready():
	case <-time.After(2 * time.Second):
		t.Fatal("static source did not publish")
	}
	if got := len(s.Load().Service("a").Instances); got != 1 {
		t.Errorf("instances = %d", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v on cancellation", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}
