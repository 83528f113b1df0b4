# task-api container image.
#
#   docker build -t task-api:1.0 .                        # the runtime image (FROM scratch)
#   docker build --target debug -t task-api:1.0-debug .   # the same binary with a shell
#
# Three stages: `build` compiles one static binary, `debug` puts it on Debian for
# troubleshooting, and the last, unnamed stage is the shipped image: the binary, CA
# certificates, a passwd entry for UID/GID 1001 and two empty directories. No shell, no
# package manager, nothing else to patch.

# ---------------------------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# cargo-auditable records the exact crates compiled into the binary in a `.dep-v0` section, so
# `cargo audit bin` and SBOM scanners (syft, trivy, grype) check what really shipped.
ARG CARGO_AUDITABLE_VERSION=0.7.7
RUN cargo install --locked "cargo-auditable@${CARGO_AUDITABLE_VERSION}" \
 && cargo auditable --version

# A fully static binary linked against glibc (crt-static; the base image's gcc and libc6-dev
# build the C parts of ring and of the bundled SQLite). Not musl: musl's resolver sends each
# DNS query to every nameserver at once and takes the first answer, so where resolv.conf lists
# the network's DNS and the host's (podman does), the host's "no such name" for `task-db`
# sometimes wins and a database connection fails. glibc asks the nameservers in order. Only
# files and dns lookups are used, which static glibc serves without loading NSS modules.
ENV CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TERM_COLOR=never
WORKDIR /src

# Dependency layer: compile every dependency against an empty crate, so a change to the code
# recompiles only task-api itself. The dummy crate's own artefacts are then removed, so the
# real sources below are always rebuilt whatever their timestamps. The workspace's other
# members, the test and CI tools under tools/, are never built here: cargo only needs their
# manifests (and placeholder targets) to read the workspace.
COPY Cargo.toml Cargo.lock ./
COPY tools/fault-harness/Cargo.toml tools/fault-harness/
COPY tools/pg-sandbox/Cargo.toml tools/pg-sandbox/
RUN mkdir -p src tools/fault-harness/src tools/pg-sandbox/src \
 && echo 'fn main() {}' > src/main.rs \
 && echo 'fn main() {}' > tools/fault-harness/src/main.rs \
 && touch tools/pg-sandbox/src/lib.rs \
 && touch src/lib.rs \
 && cargo auditable build --release --locked \
 && cargo clean --release --locked --target "$CARGO_BUILD_TARGET" -p task-api \
 && rm -rf src

COPY migrations migrations
COPY src src
RUN cargo auditable build --release --locked \
 && cp "target/$CARGO_BUILD_TARGET/release/task-api" /task-api \
 && /task-api --version | grep -q '^task-api ' \
 && readelf -d /task-api > /tmp/dynamic-section \
 && ! grep -q '(NEEDED)' /tmp/dynamic-section \
 && readelf -S /task-api | grep -q '\.dep-v0'

# The runtime filesystem, assembled here because the last stage has no shell:
# /etc/passwd and /etc/group with the service user 1001, nsswitch.conf (host names from
# /etc/hosts, then DNS), the CA bundle (for DB_SSLMODE verify-ca/verify-full against a public
# CA), /data and /backups owned by 1001, /tmp 1777.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/data /rootfs/backups /rootfs/tmp \
 && printf 'hosts: files dns\n' > /rootfs/etc/nsswitch.conf \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\ntask-api:x:1001:1001:task-api:/nonexistent:/sbin/nologin\n' \
      > /rootfs/etc/passwd \
 && printf 'root:x:0:\ntask-api:x:1001:\n' > /rootfs/etc/group \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && chown 1001:1001 /rootfs/data /rootfs/backups \
 && chmod 0750 /rootfs/data /rootfs/backups \
 && chmod 1777 /rootfs/tmp

# ---------------------------------------------------------------------------------------------
# Troubleshooting image: same binary, user and defaults, plus a Debian userland (sh, cat, id,
# df, ls). Not for production.
FROM debian:bookworm-slim AS debug
RUN groupadd --gid 1001 task-api \
 && useradd --uid 1001 --gid 1001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin task-api \
 && install -d -o 1001 -g 1001 -m 0750 /data /backups
COPY --from=build /task-api /task-api
ENV PORT=3000 BIND_ADDRESS=0.0.0.0 DATA_DIR=/data BACKUP_DIR=/backups LOG_FORMAT=json
USER 1001:1001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/task-api", "healthcheck"]
ENTRYPOINT ["/task-api"]
CMD ["serve"]

# ---------------------------------------------------------------------------------------------
# The shipped image.
FROM scratch

ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="task-api" \
      org.opencontainers.image.description="Task manager REST API over PostgreSQL or embedded SQLite" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/task-api/task-api" \
      org.opencontainers.image.licenses="MIT"

COPY --from=build /rootfs/ /
COPY --from=build /task-api /task-api

# Container defaults. DATA_DIR holds the SQLite database, used only when no PostgreSQL is
# configured: it is a directory of the image, so with --read-only it must be a volume
# (-v task-api-data:/data). BACKUP_DIR is where `task-api backup` writes: mount the host's
# ./backups there. No secret here: the password comes at run time (DB_PASSWORD_FILE).
ENV PORT=3000 \
    BIND_ADDRESS=0.0.0.0 \
    DATA_DIR=/data \
    BACKUP_DIR=/backups \
    LOG_FORMAT=json

USER 1001:1001
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/task-api", "healthcheck"]
ENTRYPOINT ["/task-api"]
CMD ["serve"]
