// Command meshgate-mesh runs the demo service mesh on this machine (what
// `make demo` does): Consul, Jaeger, the demo services with a meshgate
// sidecar each, and the meshgate edge gateway, all on loopback. It prints
// the URLs to try, and on Ctrl-C stops everything, the sidecars
// deregistering their instances from Consul first.
//
// Usage:
//
//	meshgate-mesh [-bin .bin] [-dir DIR] [-free-ports]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/meshgate/meshgate/deployments/mesh"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("meshgate-mesh", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", ".bin", "directory with meshgate, meshgate-demo, consul and jaeger")
	dir := fs.String("dir", "", "directory for the generated configs and logs (default: a new temporary one)")
	free := fs.Bool("free-ports", false, "use free ports instead of the well-known ones (8080, 8500, 16686, ...)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "meshgate-mesh-")
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		*dir = d
	}
	// SIGHUP too: a closed terminal must not leave the mesh running.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	fmt.Fprintf(stdout, "meshgate-mesh: starting Consul, Jaeger, the demo services, their sidecars and the edge (logs in %s/logs) ...\n", *dir)
	m, err := mesh.Start(ctx, mesh.Options{BinDir: *bin, Dir: *dir, FixedPorts: !*free})
	if err != nil {
		fmt.Fprintf(stderr, "meshgate-mesh: %v\n", err)
		return 1
	}
	printURLs(stdout, m)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nmeshgate-mesh: stopping (sidecars deregister from Consul) ...")
	m.Stop()
	fmt.Fprintln(stdout, "meshgate-mesh: stopped")
	return 0
}

func printURLs(w io.Writer, m *mesh.Mesh) {
	fmt.Fprintf(w, `
The mesh is up. Try:

  curl -s http://%[1]s/views/orders/1        # one request: order + customer + products, aggregated by the edge
  curl -s http://%[1]s/products              # balanced over the products instances (see X-Instance)
  Jaeger UI     http://%[3]s/search?service=edge   (the trace of each request, every hop and part)
  Jaeger API    http://%[3]s/api/traces?service=edge&limit=5
  Consul UI     http://%[4]s/ui/dc1/services   (each instance registered by its sidecar)
  edge admin    http://%[2]s/admin/ui   http://%[2]s/admin/routes   http://%[2]s/admin/instances
`, m.Edge, m.EdgeAdmin, m.Jaeger, m.Consul)
	for _, in := range m.Instances() {
		fmt.Fprintf(w, "  %-9s %-16s app %s  sidecar %s  admin http://%s/admin/instances\n", in.Service, in.ID, in.App, in.Sidecar, in.SidecarAdmin)
	}
	fmt.Fprintf(w, "\nFaults: curl -X PUT -d '{\"fail_rate\": 1}' http://<app>/_faults  (then /views/orders/1 is served partial)\nCtrl-C stops everything.\n")
}
