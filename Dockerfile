# Build: docker build -t conveyor-etl-operator:dev .
#
# Static binaries (glibc linked statically) on an empty base image, run as a
# non-root user: no shell, no package manager, no shared libraries at run time.
# The build command below is the one tests/harness/build-static.sh runs and
# checks (a test holds the two equal), since this machine has no Docker engine.
FROM rust:1.89-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
# Cargo.toml names a bench target; cargo refuses a manifest whose targets are missing.
COPY benches benches
# Without the default feature `demo` (the local control plane and fake kubelet
# of `conveyor-etl-operator demo`): the image only runs the operator.
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --no-default-features --target x86_64-unknown-linux-gnu --bin conveyor-etl-operator --bin conveyor-router-sim

FROM scratch
# CA roots for an OTLP endpoint over https (the API server's CA comes from the
# service account mount).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/conveyor-etl-operator /usr/local/bin/conveyor-etl-operator
COPY --from=build /src/target/x86_64-unknown-linux-gnu/release/conveyor-router-sim /usr/local/bin/conveyor-router-sim
# The same numeric user the manifests require (runAsNonRoot needs a number).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/conveyor-etl-operator"]
CMD ["run"]
