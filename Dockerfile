# Build: docker build -t conveyor-etl-operator:dev .
#
# Static binaries (glibc linked statically) on an empty base image, run as a
# non-root user: no shell, no package manager, no shared libraries at run time.
# BuildKit (Docker's default builder) keeps cargo's registry and target
# folder in cache mounts, so a rebuild after a change compiles only what
# changed. The tests build this file as it is (tests/harness/build-images.sh,
# with the base image made locally by tests/harness/base-images.sh) and run
# the image it produces on a real node.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY src src
# Cargo.toml names a bench target and the workspace's other members;
# cargo refuses a manifest whose targets or members are missing.
COPY benches benches
COPY crates crates
# The operator's package alone: none of the simulator, the test bed or the
# tools (crates/) is built into the image. The `dist` profile (Cargo.toml) is
# the one the benchmark measures.
ARG PACKAGE=conveyor-etl-operator
# The binary leaves the cache-mounted target folder for the image's own layer.
# Cargo judges the workspace's sources by their times, and a context's files
# can be older than a build already in the cache (another checkout, another
# branch): touched, they are always rebuilt; dependencies stay cached.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    find Cargo.toml proto src benches crates -exec touch {} + \
    && RUSTFLAGS="-C target-feature=+crt-static" cargo build --profile dist --locked --target x86_64-unknown-linux-gnu --package "$PACKAGE" \
    && install -D -m 0755 target/x86_64-unknown-linux-gnu/dist/conveyor-etl-operator /out/conveyor-etl-operator

FROM scratch
# CA roots for an OTLP endpoint over https (the API server's CA comes from the
# service account mount).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/conveyor-etl-operator /usr/local/bin/conveyor-etl-operator
# The same numeric user the manifests require (runAsNonRoot needs a number).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/conveyor-etl-operator"]
CMD ["run"]
