#!/usr/bin/env bash
# Contract test (issue 5): schemathesis generates requests for every operation of the committed
# openapi.yaml and sends them to a live `textclf serve` started here; it fails on any 5xx, any
# status code the document does not list, any response (body, content type, documented
# headers) that does not match the document, and any schema-invalid request that is not
# rejected with a 4xx (negative_data_rejection). Not checked: positive_data_acceptance, since
# some valid-looking bodies are refused on purpose (e.g. a fine-tune job with a single label). Needs target/release/textclf (built by
# `cargo test --release`, which .ci/run runs first) and python3 with venv.
# Env: CONTRACT_EXAMPLES (max generated cases per operation, default 150), CONTRACT_SEED.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/venv.sh
source .ci/venv.sh

BIN=target/release/textclf
if [ ! -x "$BIN" ]; then
  echo "== $BIN is missing: building it"
  cargo build --release
fi
EXAMPLES=${CONTRACT_EXAMPLES:-150}
SEED=${CONTRACT_SEED:-20261203}
MIN_CASES=1000

WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
echo "== starting $BIN serve on $BASE (data dir $WORK/data)"
"$BIN" serve --host 127.0.0.1 --port "$PORT" --models-dir models --data-dir "$WORK/data" \
  --log-format json >"$WORK/server.log" 2>&1 &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ready=0
for _ in $(seq 1 120); do
  if ! kill -0 "$SERVER" 2>/dev/null; then break; fi
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "$BASE/health/ready" 2>/dev/null; then ready=1; break; fi
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  echo "ERROR: the server did not become ready; its log:" >&2
  tail -n 40 "$WORK/server.log" >&2
  exit 1
fi

echo "== schemathesis $(st --version | awk '{print $NF}'): every operation of openapi.yaml, up to $EXAMPLES cases each, seed $SEED"
status=0
SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH=.ci \
  st run openapi.yaml --url "$BASE" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection \
    --phases examples,coverage,fuzzing \
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
    --request-timeout 30 --no-color \
    --report junit --report-dir "$WORK/report" 2>&1 | tee "$WORK/st.out" || status=$?
if [ "$status" != 0 ]; then
  echo "ERROR: schemathesis found contract violations (exit $status); server log tail:" >&2
  tail -n 40 "$WORK/server.log" >&2
  exit "$status"
fi
if ! kill -0 "$SERVER" 2>/dev/null; then
  echo "ERROR: the server died during the run" >&2
  tail -n 40 "$WORK/server.log" >&2
  exit 1
fi
cases=$(sed -nE 's/^ *([0-9]+) generated.*/\1/p' "$WORK/st.out" | tail -n 1)
if [ -z "$cases" ] || [ "$cases" -lt "$MIN_CASES" ]; then
  echo "ERROR: schemathesis generated ${cases:-no} test cases; at least $MIN_CASES are required" >&2
  exit 1
fi
echo "== contract OK: $cases generated test cases, no failures"
