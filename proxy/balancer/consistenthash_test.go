package balancer

import (
	"errors"
	"hash/fnv"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/meshgate/meshgate/config"
)

const keyHeader = "X-User"

// newHashOnHeader returns a consistent hash balancer keyed on X-User.
func newHashOnHeader(t testing.TB, eps []Endpoint) *ConsistentHash {
	t.Helper()
	b, err := NewConsistentHash(eps, config.HashOn{Header: "x-user"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keyed returns a request whose X-User header is key ("" for none).
func keyed(key string) *http.Request {
	r, err := http.NewRequest(http.MethodGet, "http://svc/", nil)
	if err != nil {
		panic(err)
	}
	if key != "" {
		r.Header.Set(keyHeader, key)
	}
	return r
}

func testKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "user-" + strconv.Itoa(i)
	}
	return keys
}

// owners maps every key to the ID of the endpoint it picks.
func owners(b Balancer, eps []Endpoint, keys []string) map[string]string {
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		if i := b.Pick(keyed(k), nil); i >= 0 {
			m[k] = eps[i].ID
		}
	}
	return m
}

// TestHashStringIsFNV1a pins the key hash: it must be the same in every
// process (no random seed), and changing it would move every key.
func TestHashStringIsFNV1a(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want uint64
	}{
		{in: "", want: 0xefd01f60ba992926},
		{in: "a", want: 0x82a2a958a9bece5b},
		{in: "user-1", want: 0x41a2fca5c68401c5},
		{in: "ep-0", want: 0xfda5d0fb04b95164},
	}
	for _, tt := range tests {
		h := fnv.New64a()
		h.Write([]byte(tt.in))
		if got, ref := hashString(tt.in), mix64(h.Sum64()); got != ref {
			t.Errorf("hashString(%q) = %#x, want mix64(FNV-1a) = %#x", tt.in, got, ref)
		}
		if got := hashString(tt.in); got != tt.want {
			t.Errorf("hashString(%q) = %#x, want pinned %#x", tt.in, got, tt.want)
		}
	}
}

// TestConsistentHashPinned pins where keys land so that a change to the
// ring placement, which would remap users in production, cannot slip by.
func TestConsistentHashPinned(t *testing.T) {
	t.Parallel()
	eps := endpoints(1, 1, 1, 1, 1)
	want := map[string]string{
		"alice": "ep-1", "bob": "ep-4", "carol": "ep-1", "dave": "ep-2",
		"erin": "ep-2", "frank": "ep-1", "grace": "ep-2", "heidi": "ep-1",
	}
	b := newHashOnHeader(t, eps)
	got := owners(b, eps, slices.Collect(maps.Keys(want)))
	for k, id := range want {
		if got[k] != id {
			t.Errorf("key %q -> %s, want %s", k, got[k], id)
		}
	}

	wantRing := []struct {
		hash  uint64
		owner int32
	}{{0x148ab88756ad82, 0}, {0x913170a713151a, 0}, {0xa52d8ae0179a32, 4}}
	for k, w := range wantRing {
		if b.hashes[k] != w.hash || b.owners[k] != w.owner {
			t.Errorf("ring point %d = %#x of %d, want %#x of %d", k, b.hashes[k], b.owners[k], w.hash, w.owner)
		}
	}

	c := map[string]int{}
	for _, id := range owners(b, eps, testKeys(10000)) {
		c[id]++
	}
	wantCounts := map[string]int{"ep-0": 2381, "ep-1": 1818, "ep-2": 2045, "ep-3": 1748, "ep-4": 2008}
	if !maps.Equal(c, wantCounts) {
		t.Errorf("keys per endpoint %v, want %v", c, wantCounts)
	}
}

// TestConsistentHashRingPoints checks the number of ring points per
// endpoint: VirtualNodesPerWeight per unit of weight, or scaled down in
// proportion beyond MaxRingSize.
func TestConsistentHashRingPoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
		want    []int
	}{
		{name: "one each", weights: ones(3), want: []int{160, 160, 160}},
		{name: "by weight", weights: []int{1, 2, 5}, want: []int{160, 320, 800}},
		{name: "weight below 1", weights: []int{0, 1}, want: []int{160, 160}},
		{name: "scaled", weights: []int{10000, 10000, 20000}, want: []int{MaxRingSize / 4, MaxRingSize / 4, MaxRingSize / 2}},
		{name: "scaled keeps at least one", weights: []int{MaxWeight, 1}, want: []int{MaxRingSize * MaxWeight / (MaxWeight + 1), 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newHashOnHeader(t, endpoints(tt.weights...))
			got := make([]int, len(tt.weights))
			for _, o := range b.owners {
				got[o]++
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("points per endpoint %v, want %v", got, tt.want)
			}
			if !slices.IsSorted(b.hashes) {
				t.Errorf("ring not sorted")
			}
		})
	}
}

func TestConsistentHashStable(t *testing.T) {
	t.Parallel()
	eps := endpoints(1, 2, 1, 3, 1)
	keys := testKeys(2000)
	first := owners(newHashOnHeader(t, eps), eps, keys)

	again := owners(newHashOnHeader(t, eps), eps, keys)
	reversed := slices.Clone(eps)
	slices.Reverse(reversed)
	rev := owners(newHashOnHeader(t, reversed), reversed, keys)
	b := newHashOnHeader(t, eps)
	for _, k := range keys {
		if again[k] != first[k] {
			t.Fatalf("key %q: %s after rebuild, %s before", k, again[k], first[k])
		}
		if rev[k] != first[k] {
			t.Fatalf("key %q: %s with endpoints reversed, %s before", k, rev[k], first[k])
		}
		for range 3 {
			if id := eps[b.Pick(keyed(k), nil)].ID; id != first[k] {
				t.Fatalf("key %q: repeated pick %s, want %s", k, id, first[k])
			}
		}
	}
}

func TestConsistentHashSpread(t *testing.T) {
	t.Parallel()
	const n = 10000
	tests := []struct {
		name    string
		weights []int
	}{
		{name: "5 equal", weights: ones(5)},
		{name: "weighted 1,1,2,4", weights: []int{1, 1, 2, 4}},
		{name: "scaled ring", weights: []int{10000, 10000, 20000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eps := endpoints(tt.weights...)
			b := newHashOnHeader(t, eps)
			if len(b.hashes) > MaxRingSize+len(eps) {
				t.Errorf("ring has %d points, want ≤ %d", len(b.hashes), MaxRingSize+len(eps))
			}
			c := make(map[string]int)
			for _, id := range owners(b, eps, testKeys(n)) {
				c[id]++
			}
			sum := 0
			for _, w := range tt.weights {
				sum += w
			}
			for i, e := range eps {
				fair := float64(n) * float64(tt.weights[i]) / float64(sum)
				if float64(c[e.ID]) < fair/2 {
					t.Errorf("%s got %d keys, want ≥ half its fair share %.0f", e.ID, c[e.ID], fair)
				}
			}
		})
	}
}

// TestConsistentHashMembershipChange checks removing an endpoint moves
// only its keys, and adding one moves keys only to it, about 1/N each.
func TestConsistentHashMembershipChange(t *testing.T) {
	t.Parallel()
	const n = 10000
	keys := testKeys(n)
	five := endpoints(ones(5)...)
	before := owners(newHashOnHeader(t, five), five, keys)

	for removed := range five {
		t.Run("remove "+five[removed].ID, func(t *testing.T) {
			t.Parallel()
			rest := slices.Delete(slices.Clone(five), removed, removed+1)
			after := owners(newHashOnHeader(t, rest), rest, keys)
			moved := 0
			for _, k := range keys {
				if after[k] == before[k] {
					continue
				}
				moved++
				if before[k] != five[removed].ID {
					t.Fatalf("key %q moved %s -> %s, but only %s was removed", k, before[k], after[k], five[removed].ID)
				}
			}
			if limit := n * (1.0/5 + 0.05); float64(moved) > limit {
				t.Errorf("%d keys moved, want ≤ %.0f", moved, limit)
			}
			if moved == 0 {
				t.Errorf("no key moved; the removed endpoint owned none")
			}
		})
	}

	t.Run("add a sixth", func(t *testing.T) {
		t.Parallel()
		six := append(slices.Clone(five), Endpoint{ID: "ep-new", Weight: 1})
		after := owners(newHashOnHeader(t, six), six, keys)
		moved := 0
		for _, k := range keys {
			if after[k] == before[k] {
				continue
			}
			moved++
			if after[k] != "ep-new" {
				t.Fatalf("key %q moved %s -> %s, want only moves to ep-new", k, before[k], after[k])
			}
		}
		if share := float64(moved) / n; math.Abs(share-1.0/6) > 0.05 {
			t.Errorf("%d keys (%.3f) moved, want about 1/6", moved, share)
		}
	})
}

func TestConsistentHashMissingKeyIsRoundRobin(t *testing.T) {
	t.Parallel()
	b := newHashOnHeader(t, endpoints(ones(3)...))
	empty := keyed("")
	empty.Header.Set(keyHeader, "")
	for name, r := range map[string]*http.Request{"no header": keyed(""), "empty value": empty, "nil request": nil} {
		if got, want := picks(b, r, nil, 4), []int{0, 1, 2, 0}; !slices.Equal(got, want) {
			t.Errorf("%s: picks %v, want %v", name, got, want)
		}
		b.fallback.next.Store(0)
	}
	if got, want := picks(b, keyed(""), skipSet(1), 4), []int{0, 2, 0, 2}; !slices.Equal(got, want) {
		t.Errorf("with skip: picks %v, want %v", got, want)
	}
}

// TestConsistentHashKeySources checks header, Host and cookie keys all
// hash the value itself: the same value lands where the header key does.
func TestConsistentHashKeySources(t *testing.T) {
	t.Parallel()
	eps := endpoints(ones(7)...)
	byHeader := newHashOnHeader(t, eps)
	tests := []struct {
		name  string
		on    config.HashOn
		build func(key string) *http.Request
	}{
		{name: "header, other case", on: config.HashOn{Header: "X-USER"}, build: keyed},
		{name: "host", on: config.HashOn{Header: "host"}, build: func(key string) *http.Request {
			r := keyed("")
			r.Host = key
			return r
		}},
		{name: "cookie", on: config.HashOn{Cookie: "sid"}, build: func(key string) *http.Request {
			r := keyed("")
			r.Header.Add("Cookie", `theme=dark; sid=`+key+`; other=1`)
			return r
		}},
		{name: "quoted cookie in second line", on: config.HashOn{Cookie: "sid"}, build: func(key string) *http.Request {
			r := keyed("")
			r.Header.Add("Cookie", `theme=dark`)
			r.Header.Add("Cookie", `sid="`+key+`"`)
			return r
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := NewConsistentHash(eps, tt.on)
			if err != nil {
				t.Fatal(err)
			}
			hits := map[int]bool{}
			for _, k := range testKeys(300) {
				want := byHeader.Pick(keyed(k), nil)
				got := b.Pick(tt.build(k), nil)
				if got != want {
					t.Fatalf("key %q: picked %d, header key picks %d", k, got, want)
				}
				hits[got] = true
			}
			if len(hits) < 2 {
				t.Errorf("all keys went to %v; key not used", hits)
			}
		})
	}
}

// TestConsistentHashSkipWalksRing checks a rejected owner hands the key to
// the next distinct endpoint clockwise, the same one every time.
func TestConsistentHashSkipWalksRing(t *testing.T) {
	t.Parallel()
	eps := endpoints(ones(5)...)
	b := newHashOnHeader(t, eps)
	for _, k := range testKeys(500) {
		owner := b.Pick(keyed(k), nil)
		pos, _ := slices.BinarySearch(b.hashes, hashString(k))
		want := -1
		for step := range len(b.hashes) {
			if o := int(b.owners[(pos+step)%len(b.hashes)]); o != owner {
				want = o
				break
			}
		}
		skip := skipSet(owner)
		for range 2 {
			if got := b.Pick(keyed(k), skip); got != want {
				t.Fatalf("key %q with owner %d rejected: picked %d, want next on ring %d", k, owner, got, want)
			}
		}
	}
}

func TestConsistentHashSkip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		weights []int
		skip    []int
		want    int // -2: any accepted index
	}{
		{name: "all skipped", weights: ones(4), skip: []int{0, 1, 2, 3}, want: -1},
		{name: "only one accepted (ring walk ends, scan finds it)", weights: ones(40), skip: allBut(40, 17), want: 17},
		{name: "single endpoint skipped", weights: ones(1), skip: []int{0}, want: -1},
		{name: "no endpoints", weights: nil, want: -1},
		{name: "half skipped", weights: ones(6), skip: []int{0, 2, 4}, want: -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newHashOnHeader(t, endpoints(tt.weights...))
			skip := skipSet(tt.skip...)
			for _, k := range testKeys(200) {
				got := b.Pick(keyed(k), skip)
				switch {
				case tt.want == -2 && (got < 0 || skip(got)):
					t.Fatalf("key %q: picked %d, want an accepted endpoint", k, got)
				case tt.want != -2 && got != tt.want:
					t.Fatalf("key %q: picked %d, want %d", k, got, tt.want)
				}
			}
		})
	}
}

func allBut(n, keep int) []int {
	var out []int
	for i := range n {
		if i != keep {
			out = append(out, i)
		}
	}
	return out
}

func TestNewConsistentHashErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		on    config.HashOn
		field string
	}{
		{name: "neither", on: config.HashOn{}, field: "load_balancer.hash_on"},
		{name: "both", on: config.HashOn{Header: "X-A", Cookie: "a"}, field: "load_balancer.hash_on"},
		{name: "header with space", on: config.HashOn{Header: "X User"}, field: "load_balancer.hash_on.header"},
		{name: "header with colon", on: config.HashOn{Header: "X-User:"}, field: "load_balancer.hash_on.header"},
		{name: "cookie with =", on: config.HashOn{Cookie: "a=b"}, field: "load_balancer.hash_on.cookie"},
		{name: "cookie with ;", on: config.HashOn{Cookie: "a;"}, field: "load_balancer.hash_on.cookie"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := NewConsistentHash(endpoints(1), tt.on)
			if b != nil {
				t.Errorf("balancer = %v, want nil", b)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error = %v (%T), want *ConfigError", err, err)
			}
			if ce.Field != tt.field {
				t.Errorf("Field = %q, want %q", ce.Field, tt.field)
			}
		})
	}
}
