# Build: docker build -t conveyor-etl-operator:dev .
FROM rust:1.89-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs* ./
COPY proto proto
COPY src src
# Cargo.toml names a bench target; cargo refuses a manifest whose targets are missing.
COPY benches benches
RUN cargo build --release --locked --bin conveyor-etl-operator --bin conveyor-router-sim

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/conveyor-etl-operator /usr/local/bin/
COPY --from=build /src/target/release/conveyor-router-sim /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/conveyor-etl-operator"]
CMD ["run"]
