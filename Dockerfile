# The single oauth-manager binary in a small image. Three stages:
#   chef    - cargo-chef, which turns the workspace's manifests into a "recipe" of its dependencies;
#   build   - builds the dependencies from the recipe alone (a layer kept until Cargo.lock or a
#             manifest changes), then the service itself;
#   runtime - Debian slim with CA certificates, a non-root user, the data volume and a health check.
# Build:  docker build -t oauth-manager .      (or podman build)
# Run:    docker compose up                    (docker-compose.yml: the service and PostgreSQL)
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin oauth-manager
COPY . .
RUN cargo build --release --locked --bin oauth-manager

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/oauth-manager --create-home --uid 10001 oauth-manager \
    && mkdir -p /var/lib/oauth-manager/data && chown oauth-manager /var/lib/oauth-manager/data
COPY --from=build /src/target/release/oauth-manager /usr/local/bin/oauth-manager
USER oauth-manager
WORKDIR /var/lib/oauth-manager
# With the SQLite default the database and any development secrets live here; with PostgreSQL
# only the sandbox's files would.
ENV HOST=0.0.0.0 PORT=8000 LOG_FORMAT=json OAUTH_DATA_DIR=/var/lib/oauth-manager/data
VOLUME ["/var/lib/oauth-manager/data"]
EXPOSE 8000
# The binary asks itself: GET /readyz on 127.0.0.1:$PORT (the image has no curl).
HEALTHCHECK --interval=15s --timeout=6s --start-period=10s --retries=3 CMD ["oauth-manager", "healthcheck"]
ENTRYPOINT ["oauth-manager"]
CMD ["serve"]
