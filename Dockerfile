# textclf: build with `podman build -t textclf .` (or docker), run with
# `podman run --rm -p 8080:8080 -v textclf-data:/data textclf`.
#
# Stage 1 builds the release binary. Dependencies (burn above all, ~15 min on 2 cores) are built
# in a layer of their own from Cargo.toml/Cargo.lock and placeholder sources, so a change under
# src/ rebuilds only this crate.
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
# Placeholders for every target Cargo.toml names, so cargo can resolve and build the dependencies.
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > benches/model.rs \
 && cargo build --release --locked --bin textclf \
 && rm -rf src benches target/release/textclf target/release/deps/textclf-* \
      target/release/deps/libtextclf-* target/release/.fingerprint/textclf-*
COPY benches ./benches
COPY src ./src
# touch: the copied sources keep their own mtimes, which may be older than the placeholders'.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin textclf \
 && strip target/release/textclf

# Stage 2: the runtime, with nothing but the binary and the shipped models on Debian slim.
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 textclf \
 && useradd --system --no-log-init --uid 10001 --gid textclf --home-dir /app --no-create-home textclf \
 && mkdir -p /app /data \
 && chown textclf:textclf /data
WORKDIR /app
COPY --from=builder /build/target/release/textclf /usr/local/bin/textclf
COPY models ./models
# Fine-tune jobs' database, uploaded data and trained model versions live on the volume.
ENV PORT=8080 \
    TEXTCLF_HOST=0.0.0.0 \
    TEXTCLF_MODELS_DIR=/app/models \
    TEXTCLF_DATA_DIR=/data \
    TEXTCLF_LOG_FORMAT=json
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
# `textclf healthcheck` GETs http://127.0.0.1:$PORT/health/ready (no curl in the image).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["textclf", "healthcheck"]
# The binary is PID 1 and handles SIGTERM itself: readiness turns 503, in-flight requests finish
# (bounded by TEXTCLF_SHUTDOWN_TIMEOUT_SECS, 10 s), then it exits. It starts no child processes,
# so no init is needed to reap them.
STOPSIGNAL SIGTERM
ENTRYPOINT ["textclf"]
CMD ["serve"]
