// Package e2e runs the seed scenario end to end on the local demo mesh
// (deployments/mesh): real Consul, real Jaeger, the demo services as
// separate processes, a meshgate sidecar beside each, and the meshgate edge.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/deployments/mesh"
	"github.com/meshgate/meshgate/internal/testproc"
)

// binDir holds meshgate and meshgate-demo built from this tree, and links
// to the consul and jaeger binaries of make tools.
var binDir string

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "meshgate-e2e-bin")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..")
	for name, pkg := range map[string]string{"meshgate": "./cmd/meshgate", "meshgate-demo": "./deployments/demo"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return 0, fmt.Errorf("building %s: %v\n%s", name, err, out)
		}
	}
	for name, env := range map[string]string{"consul": "MESHGATE_CONSUL_BIN", "jaeger": "MESHGATE_JAEGER_BIN"} {
		p, err := testproc.Binary(name, env)
		if err != nil {
			return 0, err
		}
		if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
			return 0, err
		}
	}
	binDir = dir
	// Spans leave each meshgate within 200ms rather than the SDK's 5s, so
	// that a trace is in Jaeger soon after its request.
	os.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	return m.Run(), nil
}

// startMesh starts a mesh on free ports for the test.
func startMesh(t *testing.T) *mesh.Mesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	m, err := mesh.Start(ctx, mesh.Options{BinDir: binDir, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Stop()
		if t.Failed() {
			dumpLogs(t, m.Logs())
		}
	})
	return m
}

// dumpLogs prints the end of every process's log.
func dumpLogs(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s\n%s", e.Name(), b)
	}
}

// get sends GET with optional headers and returns the response and body.
func get(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return res, b
}

// setFaults changes an app instance's injected faults at run time.
func setFaults(t *testing.T, in *mesh.Instance, failRate float64) {
	t.Helper()
	req, _ := http.NewRequest("PUT", "http://"+in.App+"/_faults", strings.NewReader(fmt.Sprintf(`{"fail_rate": %g}`, failRate)))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		t.Fatalf("PUT /_faults on %s: %s", in.ID, res.Status)
	}
}

func instancesOf(m *mesh.Mesh, service string) []*mesh.Instance {
	var out []*mesh.Instance
	for _, in := range m.Instances() {
		if in.Service == service {
			out = append(out, in)
		}
	}
	return out
}

// orderView is the aggregated answer of /views/orders/{id}.
type orderView struct {
	Order struct {
		ID         int   `json:"id"`
		UserID     int   `json:"user_id"`
		ProductIDs []int `json:"product_ids"`
	} `json:"order"`
	User *struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
	Products []struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	} `json:"products"`
	Partial []string `json:"_partial"`
}

// TestSeedScenario runs the e-commerce story on one mesh, in order: the
// aggregated view, its trace in Jaeger, an optional part failing, a
// required part failing, a new instance taking traffic, and an instance
// killed under load.
func TestSeedScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("the mesh takes a while to start")
	}
	m := startMesh(t)
	edge := "http://" + m.Edge

	t.Run("aggregated order view", func(t *testing.T) {
		res, body := get(t, edge+"/views/orders/1", nil)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %s", res.Status, body)
		}
		var v orderView
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if v.Order.ID != 1 || v.User == nil || v.User.ID != v.Order.UserID || v.User.Name == "" {
			t.Errorf("order and user do not fit: %s", body)
		}
		if len(v.Products) != len(v.Order.ProductIDs) || len(v.Products) == 0 {
			t.Errorf("%d products for product_ids %v: %s", len(v.Products), v.Order.ProductIDs, body)
		}
		for i, p := range v.Products {
			if p.ID != v.Order.ProductIDs[i] || p.Name == "" {
				t.Errorf("product %d is %+v, want id %d", i, p, v.Order.ProductIDs[i])
			}
		}
		if len(v.Partial) != 0 || res.Header.Get("Meshgate-Partial") != "" {
			t.Errorf("a complete view is marked partial: %v", v.Partial)
		}
	})

	t.Run("one trace with every hop and part", func(t *testing.T) {
		traceID := randomHex(16)
		_, body := get(t, edge+"/views/orders/2", http.Header{"Traceparent": {"00-" + traceID + "-" + randomHex(8) + "-01"}})
		want := []string{
			"edge: aggregate order", "edge: aggregate user", "edge: aggregate products",
			"orders-sidecar: server", "users-sidecar: server", "products-sidecar: server",
			"orders-sidecar: users hop", // orders → its sidecar → users
		}
		var have []string
		deadline := time.Now().Add(20 * time.Second)
		for {
			have = traceFacts(t, m.Jaeger, traceID)
			if missing := missingFrom(have, want); len(missing) == 0 {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("trace %s lacks %v; it has %v (view: %s)", traceID, missing, have, body)
			}
			time.Sleep(300 * time.Millisecond)
		}
	})

	t.Run("optional part fails: partial 200", func(t *testing.T) {
		for _, in := range instancesOf(m, "users") {
			setFaults(t, in, 1)
			defer setFaults(t, in, 0)
		}
		res, body := get(t, edge+"/views/orders/1", nil)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %s", res.Status, body)
		}
		var v orderView
		json.Unmarshal(body, &v)
		if v.User != nil || !slices.Equal(v.Partial, []string{"user"}) || res.Header.Get("Meshgate-Partial") != "user" {
			t.Errorf("want user missing and marked: header %q, body %s", res.Header.Get("Meshgate-Partial"), body)
		}
		if v.Order.ID != 1 || len(v.Products) == 0 {
			t.Errorf("the other parts are missing: %s", body)
		}
	})

	t.Run("required part fails: 502 with a JSON error", func(t *testing.T) {
		for _, in := range instancesOf(m, "orders") {
			setFaults(t, in, 1)
			defer setFaults(t, in, 0)
		}
		res, body := get(t, edge+"/views/orders/1", nil)
		var e struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
		}
		if res.StatusCode != 502 || json.Unmarshal(body, &e) != nil || e.Status != 502 || !strings.Contains(e.Error, `"order"`) {
			t.Errorf("%s %s, want 502 naming the order part", res.Status, body)
		}
	})

	t.Run("a new products instance takes traffic within a second", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		in, err := m.AddInstance(ctx, "products")
		if err != nil {
			t.Fatal(err)
		}
		// AddInstance returns when Consul lists it as passing.
		registered := time.Now()
		want := "products-" + in.App[strings.LastIndexByte(in.App, ':')+1:]
		for {
			res, _ := get(t, edge+"/products", nil)
			if res.Header.Get("X-Instance") == want {
				break
			}
			if time.Since(registered) > time.Second {
				t.Fatalf("%s got no request within 1s of registering", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("%s took traffic %v after Consul listed it", want, time.Since(registered).Round(time.Millisecond))
	})

	t.Run("a products instance killed under load loses no GET", func(t *testing.T) {
		var ok, failed atomic.Int64
		var mu sync.Mutex
		var failures []string
		stop := make(chan struct{})
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 10 * time.Second}
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					res, err := client.Get(edge + "/products/1")
					if err != nil {
						failed.Add(1)
						mu.Lock()
						failures = append(failures, err.Error())
						mu.Unlock()
						continue
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						failed.Add(1)
						mu.Lock()
						failures = append(failures, res.Status)
						mu.Unlock()
						continue
					}
					ok.Add(1)
				}
			}()
		}
		time.Sleep(time.Second)
		victim := instancesOf(m, "products")[0]
		victim.KillApp()
		time.Sleep(3 * time.Second) // past Consul's 1s health check
		close(stop)
		wg.Wait()
		t.Logf("%d GETs answered, %d failed, while %s was killed", ok.Load(), failed.Load(), victim.ID)
		if failed.Load() != 0 {
			t.Errorf("%d GETs failed: %v", failed.Load(), failures[:min(5, len(failures))])
		}
		if ok.Load() < 50 {
			t.Errorf("only %d GETs answered; the load did not run", ok.Load())
		}
	})
}

// traceFacts reads a trace from Jaeger and describes what it holds as
// "service: fact" strings: every part span of the edge, each sidecar's
// server spans, and the orders sidecar's outbound call to users.
func traceFacts(t *testing.T, jaeger, traceID string) []string {
	t.Helper()
	res, err := http.Get("http://" + jaeger + "/api/traces/" + traceID)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == 404 {
		return nil
	}
	var data struct {
		Data []struct {
			Spans []struct {
				OperationName string `json:"operationName"`
				ProcessID     string `json:"processID"`
				Tags          []struct {
					Key   string `json:"key"`
					Value any    `json:"value"`
				} `json:"tags"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string `json:"serviceName"`
			} `json:"processes"`
		} `json:"data"`
	}
	if err := json.NewDecoder(res.Body).Decode(&data); err != nil || len(data.Data) == 0 {
		return nil
	}
	tr := data.Data[0]
	var out []string
	for _, s := range tr.Spans {
		svc := tr.Processes[s.ProcessID].ServiceName
		kind, path := "", ""
		for _, tag := range s.Tags {
			switch tag.Key {
			case "span.kind":
				kind, _ = tag.Value.(string)
			case "url.path":
				path, _ = tag.Value.(string)
			}
		}
		switch {
		case strings.HasPrefix(s.OperationName, "aggregate "):
			out = append(out, svc+": "+s.OperationName)
		case kind == "server":
			out = append(out, svc+": server")
			if svc == "orders-sidecar" && strings.HasPrefix(path, "/users/") {
				out = append(out, svc+": users hop")
			}
		}
	}
	return out
}

func missingFrom(have, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
