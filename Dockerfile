# Multi-stage build of the single oauth-manager binary. (Not built in CI: the CI machine has no
# Docker engine; see README.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin oauth-manager

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/oauth-manager --create-home oauth-manager
COPY --from=build /src/target/release/oauth-manager /usr/local/bin/oauth-manager
USER oauth-manager
WORKDIR /var/lib/oauth-manager
ENV HOST=0.0.0.0 PORT=8000 LOG_FORMAT=json
EXPOSE 8000
ENTRYPOINT ["oauth-manager"]
CMD ["serve"]
