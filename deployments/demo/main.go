// Command meshgate-demo serves the small e-commerce services that meshgate's
// default configuration routes to: products, users and orders, each with as
// many instances as -listen flags name, all in one process.
//
// Usage:
//
//	meshgate-demo -listen products=127.0.0.1:9101 -listen products=127.0.0.1:9102 \
//	    -listen users=127.0.0.1:9201 -listen orders=127.0.0.1:9301 \
//	    [-latency 50ms] [-fail-rate 0.1] [-seed 42] [-users-url http://127.0.0.1:19301]
//
// Each instance is named "<service>-<port>" (for example "products-9102")
// and says so in the X-Instance header of every response and in the
// "instance" field of every JSON body, so that balancing across instances
// is visible to someone curling the gateway.
//
// Endpoints of a products instance (users and orders alike):
//
//	GET  /products          the list
//	GET  /products/{id}     one item; 404 with a JSON error when unknown
//	GET  /products/events   Server-Sent Events, one every 500ms; ?n= sets how many (default 5)
//	GET  /healthz           {"status":"ok"}; never delayed or failed by the injected faults
//	GET  /_faults           the injected faults in force: {"latency": "0s", "fail_rate": 0}
//	PUT  /_faults           change them at run time: {"latency": "200ms", "fail_rate": 0.5}
//	                        (a field left out keeps its value)
//
// One item is answered as the item itself plus "instance"; a list as
// {"instance": ..., "products": [...]}. An orders instance also takes POST
// /orders with a body such as {"user_id": 1, "product_ids": [1, 3]},
// answering 201 with the new order. Errors are JSON: {"error": "...",
// "status": N, "instance": "..."}.
//
// With -users-url, GET /orders/{id} calls GET {users-url}/users/{user_id}
// (2s timeout) and embeds "customer": {"id", "name"}, or null and a
// "customer_error" when that call fails; the order is served either way.
// The W3C traceparent, tracestate and baggage headers of the request are
// copied onto the call, so that the trace continues through the users
// service. In the mesh, users-url is the orders instance's own sidecar.
//
// The process stops gracefully on SIGINT or SIGTERM.
//
// `meshgate-demo token [-sub alice] [-role customer]` instead prints a JWT
// signed with the demo's (public, demo-only) key, for the example policies
// in deployments/policies.
//
// `meshgate-demo probe URL` GETs URL and exits 0 for a 2xx answer, 1
// otherwise: the health check of a container image that has no curl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serviceNames lists the services -listen accepts, for messages.
const serviceNames = "products, users, orders"

// defaultEventInterval is the pause between two Server-Sent Events.
const defaultEventInterval = 500 * time.Millisecond

// listenSpec is one -listen flag: an instance of service on addr.
type listenSpec struct {
	service string
	addr    string
}

// listenFlags collects the repeatable -listen flag.
type listenFlags []listenSpec

var _ flag.Value = (*listenFlags)(nil)

func (l *listenFlags) String() string {
	if l == nil {
		return ""
	}
	parts := make([]string, len(*l))
	for i, s := range *l {
		parts[i] = s.service + "=" + s.addr
	}
	return strings.Join(parts, ",")
}

// Set parses "service=host:port".
func (l *listenFlags) Set(v string) error {
	service, addr, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want service=host:port, for example products=127.0.0.1:9101, got %q", v)
	}
	if !isService(service) {
		return fmt.Errorf("unknown service %q in %q: want one of %s", service, v, serviceNames)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q for %s: want host:port, for example 127.0.0.1:9101", addr, service)
	}
	if host == "" {
		// ":9101" would listen on every interface; the demo is meant for
		// loopback, so make that a deliberate choice.
		return fmt.Errorf("invalid address %q for %s: name the host, for example 127.0.0.1%s (0.0.0.0 for every interface)", addr, service, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q in %q: want 0-65535", port, v)
	}
	for _, s := range *l {
		if s.addr == addr && !strings.HasSuffix(addr, ":0") {
			return fmt.Errorf("address %s given twice (for %s and %s)", addr, s.service, service)
		}
	}
	*l = append(*l, listenSpec{service: service, addr: addr})
	return nil
}

func isService(name string) bool {
	switch name {
	case "products", "users", "orders":
		return true
	}
	return false
}

// options is the parsed command line.
type options struct {
	listens  []listenSpec
	latency  time.Duration
	failRate float64
	// seed drives the -fail-rate draws; 0 means "pick one from the clock".
	seed int64
	// eventInterval is the pause between two Server-Sent Events. Not a
	// flag: tests shorten it.
	eventInterval time.Duration
	// usersURL is where orders instances reach the users service, without
	// a trailing slash; empty for no customer lookups.
	usersURL string
}

// parseFlags parses args (without the program name). Usage and flag errors
// are written to out. It returns flag.ErrHelp for -h.
func parseFlags(args []string, out io.Writer) (options, error) {
	var (
		opts    = options{eventInterval: defaultEventInterval}
		listens listenFlags
	)
	fs := flag.NewFlagSet("meshgate-demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Var(&listens, "listen", "an instance to serve, as service=host:port (service: "+serviceNames+"); repeat for more")
	fs.DurationVar(&opts.latency, "latency", 0, "added to every response except /healthz, for example 50ms")
	fs.Float64Var(&opts.failRate, "fail-rate", 0, "share of requests (0..1) answered 503, except /healthz")
	fs.Int64Var(&opts.seed, "seed", 0, "seed of the -fail-rate draws; 0 picks one from the clock (it is logged)")
	fs.StringVar(&opts.usersURL, "users-url", "", "base URL under which orders instances reach the users service (in the mesh: their own sidecar),\n"+
		"for example http://127.0.0.1:19301; GET /orders/{id} then embeds the customer")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: meshgate-demo -listen service=host:port [-listen ...] [flags]\n\n"+
			"Serves the demo services products, users and orders for meshgate.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, usageError(fs, fmt.Errorf("unexpected argument %q: every instance is a -listen flag", fs.Arg(0)))
	}
	if len(listens) == 0 {
		return options{}, usageError(fs, errors.New("no instances: give at least one -listen service=host:port"))
	}
	if opts.latency < 0 {
		return options{}, usageError(fs, fmt.Errorf("invalid -latency %v: must not be negative", opts.latency))
	}
	if !(opts.failRate >= 0 && opts.failRate <= 1) { // also rejects NaN
		return options{}, usageError(fs, fmt.Errorf("invalid -fail-rate %v: want a share between 0 and 1", opts.failRate))
	}
	if opts.usersURL != "" {
		u, err := url.Parse(opts.usersURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return options{}, usageError(fs, fmt.Errorf("invalid -users-url %q: want an http or https base URL, for example http://127.0.0.1:19301", opts.usersURL))
		}
		if !slices.ContainsFunc(listens, func(s listenSpec) bool { return s.service == "orders" }) {
			return options{}, usageError(fs, errors.New("-users-url is for orders instances: give an orders -listen too"))
		}
		opts.usersURL = strings.TrimRight(opts.usersURL, "/")
	}
	opts.listens = listens
	return opts, nil
}

// usageError reports err the way the flag package reports its own errors.
func usageError(fs *flag.FlagSet, err error) error {
	fmt.Fprintln(fs.Output(), err)
	fs.Usage()
	return err
}

func main() {
	os.Exit(cli(os.Args[1:], os.Stderr))
}

// cli runs the command with args (without the program name), logging to
// stderr, and returns the exit status: 0 after a signalled shutdown, 2 for
// a bad command line, 1 for any other failure.
func cli(args []string, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "token":
			return mintToken(args[1:], os.Stdout, stderr)
		case "probe":
			return probeCmd(args[1:], os.Stdout, stderr)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2 // parseFlags has printed the error and the usage
	}
	if err := run(ctx, opts, logger); err != nil {
		logger.Error("meshgate-demo failed", "error", err)
		return 1
	}
	return 0
}

// run serves the instances of opts until ctx is done, then shuts them down.
func run(ctx context.Context, opts options, logger *slog.Logger) error {
	if opts.seed == 0 {
		opts.seed = time.Now().UnixNano()
	}
	f, err := listen(opts, logger)
	if err != nil {
		return err
	}
	return f.serve(ctx)
}
