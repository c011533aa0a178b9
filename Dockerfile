# syntax=docker/dockerfile:1
# One image for every Retrace service: retrace-archive, retrace-gateway, retrace-worker, and
# the `retrace` CLI (for `retrace config check` and admin commands inside the container).
# compose.yaml picks the binary per service.

# The toolchain developers and CI use (the workspace needs at least its rust-version, 1.90).
FROM rust:1.95-bookworm AS builder
# librdkafka, OpenSSL and Cyrus SASL (with Kerberos) are compiled from source by their -sys
# crates and linked in: a C toolchain and perl (in the image), cmake and zlib's headers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and the target directory between builds, so a code change
# does not rebuild every dependency; the binaries are copied out because the target directory
# is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin retrace-archive --bin retrace-gateway --bin retrace-worker --bin retrace \
    && mkdir -p /out \
    && cp target/release/retrace-archive target/release/retrace-gateway \
          target/release/retrace-worker target/release/retrace /out/

FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to a managed Kafka or an OIDC provider; curl: the health check. (TLS
# and SASL are linked into the binaries.)
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 retrace \
    && useradd --system --uid 10001 --gid retrace --home-dir /var/lib/retrace --shell /usr/sbin/nologin retrace \
    && mkdir -p /var/lib/retrace /etc/retrace \
    && chown retrace:retrace /var/lib/retrace
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/retrace
# Inside a container the services must listen beyond loopback; the archive keeps its data under
# the working directory, the volume (compose sets RETRACE_HTTP and RETRACE_DATA_DIR per service).
ENV RETRACE_HTTP=0.0.0.0:7070
VOLUME ["/var/lib/retrace"]
EXPOSE 7070 7071 7072
# Every service answers /healthz on the port of RETRACE_HTTP: 200 once it is ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${RETRACE_HTTP##*:}/healthz\" || exit 1"]
CMD ["retrace-archive"]
