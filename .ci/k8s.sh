#!/usr/bin/env bash
# Kubernetes manifests (issue 5): validates every manifest in deploy/kubernetes offline against the
# strict JSON schemas of pinned Kubernetes versions (kubernetes-validate, pinned in .ci/venv.sh,
# which installs it into a cached virtualenv), plus the checks in .ci/k8s_check.py (kustomization
# lists every file; selectors, named ports, volume claims, HPA target and termination grace period
# fit together). When kubectl is on the machine, the kustomize output is rendered
# (`kubectl kustomize`, offline) and checked the same way. No cluster is needed or contacted.
# Exits non-zero on any invalid manifest. Env: K8S_VERSIONS (default "1.30.0 1.37.0": the oldest
# release these manifests claim and the newest the validator knows).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/venv.sh
source .ci/venv.sh

DIR=deploy/kubernetes
read -r -a VERSIONS <<< "${K8S_VERSIONS:-1.30.0 1.37.0}"
ARGS=()
for v in "${VERSIONS[@]}"; do ARGS+=(--k8s-version "$v"); done

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize "$DIR" > "$TMP/rendered.yaml"
  ARGS+=(--rendered "$TMP/rendered.yaml")
else
  echo "== k8s: kubectl not found; the kustomize output is not rendered (the files are still checked)"
fi
python .ci/k8s_check.py "$DIR" "${ARGS[@]}"
