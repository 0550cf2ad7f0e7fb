# syntax=docker/dockerfile:1
# The omnisync binary in a small non-root image: every subcommand (produce,
# consume, forward, api, topics, …) runs from it; docker-compose.yml shows
# the production shape.

FROM golang:1.26-trixie AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Pure Go (modernc SQLite, pgx, franz-go): a static binary.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/omnisync ./cmd/omnisync

FROM debian:trixie-slim
# ca-certificates for TLS to Kafka, the registry and forwarding targets;
# curl for container health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 omnisync \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/omnisync --create-home omnisync
COPY --from=build /out/omnisync /usr/local/bin/omnisync
USER 10001:10001
WORKDIR /var/lib/omnisync
ENTRYPOINT ["/usr/local/bin/omnisync"]
CMD ["--help"]
