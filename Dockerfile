# syntax=docker/dockerfile:1
#
# meshgate and the demo services, as small non-root images.
#
#   docker build -t meshgate .                     # the default target: meshgate
#   docker build --target demo -t meshgate-demo .  # the demo services
#
# docker-compose.yml builds both. The final images are distroless (no shell,
# no curl): health checks use `meshgate probe URL` and `meshgate-demo probe URL`.

# ---- build: both binaries, static (CGO off), without paths or symbols ----
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w -X main.Version=${VERSION}" -o /out/meshgate ./cmd/meshgate && \
    go build -trimpath -ldflags "-s -w" -o /out/meshgate-demo ./deployments/demo

# ---- demo: products, users and orders (meshgate-demo -listen ...) ----
FROM gcr.io/distroless/static-debian12:nonroot AS demo
COPY --from=build /out/meshgate-demo /meshgate-demo
USER nonroot:nonroot
EXPOSE 9000
ENTRYPOINT ["/meshgate-demo"]
CMD ["-listen", "products=0.0.0.0:9000"]

# ---- meshgate: the sidecar and edge gateway (the default target) ----
FROM gcr.io/distroless/static-debian12:nonroot AS meshgate
COPY --from=build /out/meshgate /meshgate
USER nonroot:nonroot
# 8080: traffic (as configured); 9901: the admin listener.
EXPOSE 8080 9901
ENTRYPOINT ["/meshgate"]
# With no --config (and no MESHGATE_CONFIG) meshgate runs its embedded
# default, which listens on loopback: mount a config and pass
# `run --config /etc/meshgate/meshgate.yaml`, as docker-compose.yml does.
CMD ["run"]
