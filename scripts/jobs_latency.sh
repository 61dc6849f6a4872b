#!/usr/bin/env bash
# /classify latency with and without a fine-tune job training in the same process.
#
# Starts the release binary on a scratch data directory, runs wrk (bench/wrk/classify.lua, real
# THUCNews test headlines, 1 text per request) for $SECONDS_PER_RUN seconds while idle, then
# submits a long sms_spam job (no validation split, so no early stop) and runs the same load while it trains, then cancels it. Prints
# wrk's latency distribution for both runs and the job's progress. Needs wrk and jq.
#
#   scripts/jobs_latency.sh            # TEXTCLF_BIN, PORT, CONNS, SECONDS_PER_RUN override
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TEXTCLF_BIN:-target/release/textclf}
PORT=${PORT:-18181}
CONNS=${CONNS:-8}
SECS=${SECONDS_PER_RUN:-15}
DATA=../shared/data
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

head -n 2000 "$DATA/thucnews_titles/test.jsonl" | jq -c '{text: .text}' > "$WORK/bodies.txt"
TEXTCLF_API_KEY= "$BIN" serve --port "$PORT" --host 127.0.0.1 --data-dir "$WORK/data" \
  --log-format json 2> "$WORK/server.log" &
SERVER=$!
for _ in $(seq 100); do curl -sf "localhost:$PORT/health/ready" > /dev/null && break; sleep 0.1; done

run_wrk() {
  BODIES="$WORK/bodies.txt" wrk -t2 -c"$CONNS" -d"${SECS}s" --timeout 10s --latency \
    -s bench/wrk/classify.lua "http://127.0.0.1:$PORT" | grep -E "Latency|50%|90%|99%|Requests/sec|Non-2xx|errors"
}

echo "== idle (no job), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
run_wrk

JOB=$(curl -s "localhost:$PORT/train-job?model=latency-probe&epochs=1000&validation_split=0" \
  -H 'content-type: application/x-ndjson' --data-binary @"$DATA/sms_spam/train.jsonl" | jq -r .id)
until [ "$(curl -s "localhost:$PORT/train-job/$JOB" | jq -r .status)" = running ]; do sleep 0.1; done
sleep 1
echo "== while job $JOB trains, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
run_wrk
curl -s "localhost:$PORT/train-job/$JOB" | jq -c '{status, progress}'
curl -s -X POST "localhost:$PORT/train-job/$JOB/cancel" | jq -c '{status}'
