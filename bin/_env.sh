# Sourced by bin/demo and bin/test: makes .venv hold exactly the locked dependencies.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "chat_assets needs Python 3.11 or newer on PATH" >&2
  return 1
}

VENV="$ROOT/.venv"
stamp_file="$VENV/.installed"
wanted=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp_file" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing chat_assets and its locked dependencies into .venv ..." >&2
  [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.lock
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$wanted" > "$stamp_file"
fi
export PATH="$VENV/bin:$PATH"
# As the Dockerfile does: two heap arenas, not one per fetching thread (see docs/deployment.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
