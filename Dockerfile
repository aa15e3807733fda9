# The `pipeline` binary as an image, for docker-compose.yml's supervisor, dashboard and the
# binary the Airflow containers run (no image of it is published; compose builds this once).
#
# Built on Debian 12 (glibc 2.36) so that the binary also runs in the Airflow image and in any
# newer Debian. librdkafka is compiled in (rdkafka's cmake build): the binary needs only libc
# and zlib at run time.
FROM rust:1.89-bookworm AS build
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends protobuf-compiler cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pipeline \
    && install -m 0755 target/release/pipeline /usr/local/bin/pipeline

FROM debian:bookworm-20251117-slim
# curl for the healthchecks, certificates for the RandomUser API over HTTPS.
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/pipeline /usr/local/bin/pipeline
# The defaults bind to loopback; compose overrides cluster.host and the addresses per service.
WORKDIR /var/lib/pipeline
ENTRYPOINT ["/usr/local/bin/pipeline"]
CMD ["--help"]
