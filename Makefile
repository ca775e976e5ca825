# meshgate — the README's two set-up commands are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/.bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.Version=$(VERSION)

.PHONY: build run demo test test-short e2e tools bench bench-peers bench-go fuzz schema vet clean

build: ## build meshgate and the demo services into .bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/meshgate ./cmd/meshgate
	$(GO) build -trimpath -o $(BIN)/meshgate-demo ./deployments/demo
	$(GO) build -trimpath -o $(BIN)/meshgate-mesh ./deployments/mesh/meshgate-mesh

run: build ## the edge gateway on the embedded default, in front of the demo services
	@$(CURDIR)/deployments/run.sh $(BIN)

demo: build tools ## the demo mesh on this machine: Consul, Jaeger, the services with a sidecar each, the edge
	@$(BIN)/meshgate-mesh -bin $(BIN)

tools: ## build Consul and Jaeger from tools/consul and tools/jaeger into .bin/ (cached per machine); install redis-server and chromium
	@$(CURDIR)/tools/ensure.sh consul
	@$(CURDIR)/tools/ensure.sh jaeger
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q --no-install-recommends redis-server >/dev/null; \
		else echo "redis-server is missing: sudo apt-get install redis-server (the global rate-limit tests need it)"; fi; }
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q --no-install-recommends chromium >/dev/null; \
		else echo "chromium is missing: sudo apt-get install chromium (the admin page test e2e/adminui needs it)"; fi; }

test: tools ## every test, with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

e2e: tools ## the end-to-end tests on the local mesh (make test runs them too), verbose
	$(GO) test -race -count=1 -v ./e2e/...

test-short: tools
	$(GO) test -count=1 -short ./...

bench: build ## load benchmark: direct, meshgate, gobaseline and installed peers
	$(GO) run ./bench -meshgate $(BIN)/meshgate

bench-peers: ## install nginx, HAProxy, Caddy and wrk from Debian for `make bench`
	@$(CURDIR)/bench/install-peers.sh

bench-go: ## Go micro-benchmarks of the request hot path
	$(GO) test -run '^$$' -bench . -benchmem ./proxy/...

FUZZTIME ?= 10s
# package:target for every fuzz target; keep in step with `grep -rn '^func Fuzz'`.
FUZZ_TARGETS = ./config:FuzzLoad ./policies:FuzzLoadPolicies ./policies:FuzzNormalizePath ./policies:FuzzCELCompile \
	./proxy:FuzzReadResponseHead ./proxy/balancer:FuzzCookieValue ./resilience:FuzzParseRetryAfter \
	./deployments/demo:FuzzListenFlag ./bench:FuzzParseStat ./bench:FuzzParseWrk ./bench:FuzzParseWrkDuration

fuzz: ## a short run (FUZZTIME each) of every fuzz target
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$pkg $$name"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

schema: ## regenerate config/meshgate.schema.json and policies/policy.schema.json from the Go types
	$(GO) test ./config -run TestSchemaUpToDate -update
	$(GO) test ./policies -run TestSchemaUpToDate -update-schema

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
