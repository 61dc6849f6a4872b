#!/usr/bin/env bash
# textclf benchmark suite: the one entry command (issue 6).
#
#   bench/run.sh            full run (~15 min after the builds): writes BENCHMARKS.md and bench/charts/*.svg
#   bench/run.sh --smoke    CI's smoke run (~1 min after the builds): writes to a temp dir, asserts it worked
#
# Installs wrk and GNU time from Debian if missing, builds textclf (target/), the HTTP ceiling
# (bench/ceiling, own target dir bench/target) and, for a full run, benches/model.rs on ndarray
# (target/) and on flex (target/flex; the first flex build takes ~10 min), then runs bench/bench.py
# (Python 3 standard library only). Extra arguments go to bench.py (see `bench/bench.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
for a in "$@"; do
  if [ "$a" = "--smoke" ]; then smoke=1; fi
done

need=()
command -v wrk >/dev/null || need+=(wrk)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]} from Debian" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 1; }

echo "bench: building textclf (cargo build --release)" >&2
cargo build --release
echo "bench: building the HTTP ceiling (bench/ceiling)" >&2
(cd bench/ceiling && CARGO_TARGET_DIR="$PWD/../target" cargo build --release)
if [ "$smoke" = 0 ]; then
  echo "bench: building benches/model.rs (ndarray, target/)" >&2
  cargo bench --bench model --no-run
  if [[ " $* " != *" --no-flex "* ]]; then
    echo "bench: building benches/model.rs with --features flex (separate target dir target/flex)" >&2
    CARGO_TARGET_DIR="$PWD/target/flex" cargo bench --features flex --bench model --no-run
  fi
fi

exec python3 bench/bench.py "$@"
