package discovery

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func entry(node, nodeAddr, id, addr string, port int, weights api.AgentWeights, meta map[string]string, statuses ...string) *api.ServiceEntry {
	e := &api.ServiceEntry{
		Node:    &api.Node{Node: node, Address: nodeAddr},
		Service: &api.AgentService{ID: id, Service: "web", Address: addr, Port: port, Weights: weights, Meta: meta, Tags: []string{"v1"}},
	}
	for i, st := range statuses {
		e.Checks = append(e.Checks, &api.HealthCheck{CheckID: string(rune('a' + i)), Status: st})
	}
	return e
}

func TestInstancesFromEntries(t *testing.T) {
	t.Parallel()
	w := api.AgentWeights{Passing: 5, Warning: 2}
	entries := []*api.ServiceEntry{
		entry("n1", "10.0.0.1", "web-1", "", 8080, w, nil, api.HealthPassing, api.HealthPassing),
		entry("n2", "10.0.0.2", "web-2", "192.168.1.2", 8080, w, nil, api.HealthPassing, api.HealthWarning),
		entry("n3", "10.0.0.3", "web-3", "10.0.0.3", 8080, w, nil, api.HealthCritical),
		entry("n4", "10.0.0.4", "web-4", "10.0.0.4", 8080, w, map[string]string{"weight": "9"}, api.HealthPassing),
		entry("n5", "10.0.0.5", "web-5", "10.0.0.5", 8080, w, map[string]string{"weight": "lots"}, api.HealthPassing),
		entry("n6", "10.0.0.6", "web-6", "10.0.0.6", 8080, api.AgentWeights{}, nil, api.HealthMaint),
		entry("n7", "10.0.0.7", "web-7", "10.0.0.7", 8080, api.AgentWeights{}, nil),
		{Service: nil},
		nil,
	}
	tests := []struct {
		name         string
		allowWarning bool
		want         []Instance
	}{
		{name: "passing only", want: []Instance{
			{ID: "n1/web-1", HostPort: "10.0.0.1:8080", Weight: 5, Health: Passing},
			{ID: "n4/web-4", HostPort: "10.0.0.4:8080", Weight: 9, Health: Passing},
			{ID: "n5/web-5", HostPort: "10.0.0.5:8080", Weight: 5, Health: Passing},
			{ID: "n7/web-7", HostPort: "10.0.0.7:8080", Weight: 1, Health: Passing},
		}},
		{name: "warning allowed", allowWarning: true, want: []Instance{
			{ID: "n1/web-1", HostPort: "10.0.0.1:8080", Weight: 5, Health: Passing},
			{ID: "n2/web-2", HostPort: "192.168.1.2:8080", Weight: 2, Health: Warning},
			{ID: "n4/web-4", HostPort: "10.0.0.4:8080", Weight: 9, Health: Passing},
			{ID: "n5/web-5", HostPort: "10.0.0.5:8080", Weight: 5, Health: Passing},
			{ID: "n7/web-7", HostPort: "10.0.0.7:8080", Weight: 1, Health: Passing},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := instancesFromEntries("web", entries, tc.allowWarning)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d instances, want %d: %+v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				g := got[i]
				if g.ID != w.ID || g.HostPort != w.HostPort || g.Weight != w.Weight || g.Health != w.Health || g.Source != "consul" || g.Service != "web" {
					t.Errorf("instance %d = %+v, want %+v", i, *g, w)
				}
			}
		})
	}
}

func TestRoutesFromTagsAndMeta(t *testing.T) {
	t.Parallel()
	hints, errs := routesFromTags(map[string][]string{
		"products": {"meshgate.route=/products", "v2", "meshgate.route=shop.example.com/catalog"},
		"users":    {"meshgate.route=/users", "meshgate.route=/users"},
		"bad":      {"meshgate.route=nopath", "meshgate.route=/a b"},
		"plain":    {"web"},
	}, "meshgate.route=")
	want := []RouteHint{
		{Service: "products", PathPrefix: "/products", Origin: "consul tag"},
		{Service: "products", Host: "shop.example.com", PathPrefix: "/catalog", Origin: "consul tag"},
		{Service: "users", PathPrefix: "/users", Origin: "consul tag"},
	}
	if len(hints) != len(want) {
		t.Fatalf("hints = %+v", hints)
	}
	for i := range want {
		if hints[i] != want[i] {
			t.Errorf("hint %d = %+v, want %+v", i, hints[i], want[i])
		}
	}
	if len(errs) != 2 {
		t.Errorf("errors = %v, want 2 (no path, a space)", errs)
	}

	mh, merrs := routesFromMeta("web", []*api.ServiceEntry{
		entry("n1", "", "a", "h", 1, api.AgentWeights{}, map[string]string{"meshgate-route": "/web"}),
		entry("n2", "", "b", "h", 1, api.AgentWeights{}, map[string]string{"meshgate-route": "/web"}),
		entry("n3", "", "c", "h", 1, api.AgentWeights{}, map[string]string{"meshgate-route": "bad"}),
		entry("n4", "", "d", "h", 1, api.AgentWeights{}, nil),
	}, "meshgate-route")
	if len(mh) != 1 || mh[0] != (RouteHint{Service: "web", PathPrefix: "/web", Origin: "consul meta"}) {
		t.Errorf("meta hints = %+v", mh)
	}
	if len(merrs) != 1 {
		t.Errorf("meta errors = %v", merrs)
	}
}

func TestSameSnapshotAndInstances(t *testing.T) {
	t.Parallel()
	a := NewInstance(Instance{ID: "x", Address: "1.1.1.1", Port: 1, Weight: 1, Tags: []string{"a"}, Meta: map[string]string{"k": "v"}})
	b := NewInstance(Instance{ID: "x", Address: "1.1.1.1", Port: 1, Weight: 1, Tags: []string{"a"}, Meta: map[string]string{"k": "v"}})
	c := NewInstance(Instance{ID: "x", Address: "1.1.1.1", Port: 1, Weight: 2, Tags: []string{"a"}, Meta: map[string]string{"k": "v"}})
	if !sameInstances([]*Instance{a}, []*Instance{b}) || sameInstances([]*Instance{a}, []*Instance{c}) {
		t.Error("sameInstances wrong")
	}
	s1 := NewSnapshot("consul", map[string][]*Instance{"web": {a}}, time.Time{})
	s2 := NewSnapshot("consul", map[string][]*Instance{"web": {b}}, time.Time{})
	s3 := NewSnapshot("consul", map[string][]*Instance{"web": {c}}, time.Time{})
	if !sameSnapshot(s1, s2) || sameSnapshot(s1, s3) {
		t.Error("sameSnapshot wrong")
	}
	s2.Routes = []RouteHint{{Service: "web", PathPrefix: "/"}}
	if sameSnapshot(s1, s2) {
		t.Error("routes ignored by sameSnapshot")
	}
}

func TestIsNotFound(t *testing.T) {
	t.Parallel()
	if !isNotFound(api.StatusError{Code: 404, Body: "x"}) || isNotFound(api.StatusError{Code: 500}) || isNotFound(errors.New("404")) {
		t.Error("isNotFound wrong")
	}
}
