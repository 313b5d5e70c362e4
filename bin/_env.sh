# Sourced by bin/demo and bin/test: makes .venv hold chat_assets with the extra the caller names
# in CHAT_ASSETS_EXTRA (demo: the embedded PostgreSQL; dev, the default: the tests' tools too), at
# the versions requirements.lock pins.
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
extra="${CHAT_ASSETS_EXTRA:-dev}"
locked=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
installed=$(cat "$stamp_file" 2>/dev/null || true)
# A .venv made for the tests (dev) holds everything the demo needs as well.
if [ ! -x "$VENV/bin/python" ] ||
   { [ "$installed" != "$extra $locked" ] && [ "$installed" != "dev $locked" ]; }; then
  echo "Installing chat_assets[$extra] and its locked dependencies into .venv ..." >&2
  [ -x "$VENV/bin/python" ] || "$(pick_python)" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c requirements.lock -e ".[$extra]"
  echo "$extra $locked" > "$stamp_file"
fi
export PATH="$VENV/bin:$PATH"
# As the image's pip install does: the package's bytecode compiled ahead, so that each run's
# process reads it instead of compiling it again, as it would wherever PYTHONDONTWRITEBYTECODE is
# set. Files whose source has the same time and size are skipped. Best effort: a checkout that
# cannot be written loads as before, and a file that does not compile is named, here and again
# where it is imported.
python -m compileall -q chat_assets chat_assets_demo >&2 || true
# As the Dockerfile does: two heap arenas, not one per fetching thread (see docs/deployment.md).
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
