#!/usr/bin/env bash
# Container check (issue 5): build the top-level Dockerfile and run the image with
# ../shared/tools/container-check.sh (podman + locally bootstrapped base images; it builds, starts
# the image, polls /health, then removes its container), then start the image again here and
# check it the way a user would: non-root, the HEALTHCHECK command, the /data volume (the job
# store opens in it at startup), a Chinese headline classified as "sports" through
# /classify, and SIGTERM (`stop`) ending it with exit code 0 within the drain bound.
# Runs as root (as CI does); the first run on a machine installs podman, runc and debootstrap and
# bootstraps the base images (kept under $CONTAINER_WORK for later runs).
# Env (the same as container-check.sh's): IMAGE (default localhost/textclf:ci), HOST_PORT
# (default 18080), CONTAINER_WORK (default /var/tmp/ci-container).
set -euo pipefail
cd "$(dirname "$0")/.."

export IMAGE=${IMAGE:-localhost/textclf:ci}
export HOST_PORT=${HOST_PORT:-18080}
WORK=${CONTAINER_WORK:-/var/tmp/ci-container}
NAME=textclf-ci
TOOL=../shared/tools/container-check.sh
HEADLINE='湖人队在主场击败勇士队'
EXPECT=sports

t0=$SECONDS
step_start=$SECONDS
timing=()
step_done() { # record and print how long the step just finished took
  local secs=$((SECONDS - step_start))
  timing+=("$(printf '%-34s %5d s' "$1" "$secs")")
  echo "== $1: ${secs} s"
  step_start=$SECONDS
}
fail() {
  echo "ERROR: $*" >&2
  exit 1
}

[ -f "$TOOL" ] || fail "$TOOL is missing"
[ -f Dockerfile ] || fail "no Dockerfile at the top of the repository"

# container-check.sh reads the host's Debian mirror with `grep ... /etc/apt/sources.list.d/*.sources
# /etc/apt/sources.list` under `set -o pipefail`: on a host that keeps its sources only in
# sources.list.d (Debian 12's default), grep exits 2 for the missing file and the tool dies
# before printing anything. An empty sources.list changes nothing for apt; it is removed again
# on exit.
created_sources_list=0
if [ ! -e /etc/apt/sources.list ]; then
  printf '# (empty: this host keeps its apt sources in sources.list.d/)\n' >/etc/apt/sources.list
  created_sources_list=1
fi

# The same engine and storage that container-check.sh uses, so its image is found here.
if docker info >/dev/null 2>&1; then
  ENGINE=docker
else
  ENGINE=podman
  export CONTAINERS_CONF="$WORK/etc/containers.conf" CONTAINERS_STORAGE_CONF="$WORK/etc/storage.conf"
fi

cleanup() {
  if command -v "$ENGINE" >/dev/null; then
    "$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
  fi
  if [ "$created_sources_list" = 1 ]; then rm -f /etc/apt/sources.list; fi
}
trap cleanup EXIT

show_logs() {
  echo "-- container log (tail):" >&2
  "$ENGINE" logs "$NAME" 2>&1 | tail -n 30 >&2 || true
}

# 1. Build the image and run it once (the tool prints the build log's tail and the /health answer).
echo "== container-check.sh: build $IMAGE and run it (cold: podman install, base images and the burn build)"
CONTAINER_WORK=$WORK bash "$TOOL" "$PWD"
step_done "build + health (container-check.sh)"
"$ENGINE" images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F "${IMAGE#docker.io/}" || true

# 2. The tool removed its container: start the image again, with a named volume for /data.
"$ENGINE" rm -f "$NAME" >/dev/null 2>&1 || true
"$ENGINE" volume rm -f "$NAME-data" >/dev/null 2>&1 || true
"$ENGINE" run -d --name "$NAME" -p "127.0.0.1:${HOST_PORT}:8080" -v "$NAME-data:/data" "$IMAGE" >/dev/null
BASE=http://127.0.0.1:$HOST_PORT
ready=0
for _ in $(seq 1 60); do
  if curl -fsS -o /dev/null --max-time 2 "$BASE/health/ready"; then ready=1; break; fi
  if [ "$("$ENGINE" inspect --format '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]; then break; fi
  sleep 0.5
done
[ "$ready" = 1 ] || { show_logs; fail "the container did not become ready on $BASE"; }
step_done "start + ready"

# 3. What the image promises.
uid=$("$ENGINE" exec "$NAME" id -u)
[ "$uid" != 0 ] || fail "the container runs as root"
echo "== runs as uid $uid"
"$ENGINE" exec "$NAME" textclf healthcheck || { show_logs; fail "'textclf healthcheck' (the HEALTHCHECK command) failed"; }
hc=$("$ENGINE" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
case "$hc" in *healthcheck*) echo "== HEALTHCHECK: $hc" ;; *) fail "the image has no HEALTHCHECK (got: $hc)" ;; esac
"$ENGINE" exec "$NAME" sh -c 'test -w /data && test -f /data/jobs.sqlite3' ||
  { show_logs; fail "/data is not writable by uid $uid or holds no job store"; }
code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/train-job")
[ "$code" = 200 ] || fail "GET /train-job answered $code (job store in /data)"
echo "== /data writable, job store open (GET /train-job: 200)"

# 4. A Chinese sports headline through /classify must come back "sports" (default model news-zh).
body=$(curl -fsS --max-time 10 -H 'content-type: application/json' \
  --data-binary "{\"text\":\"$HEADLINE\"}" "$BASE/classify") ||
  { show_logs; fail "POST /classify failed"; }
echo "== POST /classify {\"text\":\"$HEADLINE\"} -> $body"
label=$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["label"])') ||
  fail "the /classify answer is not the expected JSON"
[ "$label" = "$EXPECT" ] || fail "label is '$label', expected '$EXPECT'"
step_done "checks + classify"

# 5. SIGTERM: `stop` sends it (STOPSIGNAL) and waits; the server drains and exits 0 by itself.
"$ENGINE" stop -t 30 "$NAME" >/dev/null
exit_code=$("$ENGINE" inspect --format '{{.State.ExitCode}}' "$NAME")
stop_secs=$((SECONDS - step_start))
[ "$exit_code" = 0 ] || { show_logs; fail "the container exited with $exit_code after SIGTERM"; }
[ "$stop_secs" -le 12 ] || fail "stopping took ${stop_secs} s (drain bound: 10 s)"
step_done "SIGTERM -> exit 0"
"$ENGINE" rm -f "$NAME" >/dev/null
"$ENGINE" volume rm -f "$NAME-data" >/dev/null 2>&1 || true

echo "== container timings"
printf '   %s\n' "${timing[@]}"
echo "== container OK: label '$label' for the headline, $((SECONDS - t0)) s in all"
