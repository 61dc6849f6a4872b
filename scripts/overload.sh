#!/usr/bin/env bash
# Overload figures for issue 4: the largest load textclf answers without a single 5xx, what it
# answers beyond that (share of 429s), and its RSS idle and under each load.
#
# Starts the release binary with its default settings (queue of 2048 texts per model) on a
# scratch data directory and runs wrk (bench/wrk/status.lua, real THUCNews test headlines) at
# growing connection counts, with 1 and with 32 texts per request; after each run it prints the
# counts by status, the latency percentiles and the server's RSS (peak of samples every 100 ms,
# and VmHWM). Needs wrk, jq and python3.
#
#   scripts/overload.sh        # TEXTCLF_BIN, PORT, SECONDS_PER_RUN, CONNECTIONS override
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TEXTCLF_BIN:-target/release/textclf}
PORT=${PORT:-18182}
SECS=${SECONDS_PER_RUN:-10}
read -r -a CONNS <<< "${CONNECTIONS:-64 256 1024}"
DATA=../shared/data
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n 65536 2>/dev/null || true

head -n 2000 "$DATA/thucnews_titles/test.jsonl" | jq -c '{text: .text}' > "$WORK/bodies-1.txt"
head -n 2048 "$DATA/thucnews_titles/test.jsonl" | jq -s -c '[_nwise(32) | {texts: map(.text)}] | .[]' \
  > "$WORK/bodies-32.txt"
TEXTCLF_API_KEY= "$BIN" serve --port "$PORT" --host 127.0.0.1 --data-dir "$WORK/data" \
  --log-format json 2> "$WORK/server.log" &
SERVER=$!
for _ in $(seq 100); do curl -sf "localhost:$PORT/health/ready" > /dev/null && break; sleep 0.1; done
sleep 1
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$SERVER/status"; }
echo "idle RSS: $(rss) MiB"

for texts in 1 32; do
  for c in "${CONNS[@]}"; do
    peak=0
    ( while kill -0 "$SERVER" 2>/dev/null; do rss; echo; sleep 0.1; done ) > "$WORK/rss.txt" &
    SAMPLER=$!
    out=$(BODIES="$WORK/bodies-$texts.txt" wrk -t2 -c"$c" -d"${SECS}s" --timeout 10s \
      -s bench/wrk/status.lua "http://127.0.0.1:$PORT" | sed -n 's/^WRK_STATUS //p')
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    peak=$(sort -n "$WORK/rss.txt" | tail -n 1)
    echo "texts/request=$texts connections=$c $out peak_rss_mib=$peak"
  done
done
echo "VmHWM: $(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$SERVER/status") MiB"
