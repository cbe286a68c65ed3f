#!/usr/bin/env bash
# Create or reuse .venv at the repository root and install open-cosmos3 into it (idempotent; a second run that has
# nothing to do takes about a second).
#   bash scripts/setup.sh          the package
#   bash scripts/setup.sh --test   the package and its test extra
# Torch is pinned to the CPU build (torch==2.13.0 installs from local disk here). For a GPU, install a CUDA build of
# torch into .venv first (e.g. .venv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128)
# and keep it: this script never replaces a torch that is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"

started=$SECONDS
step() {  # one line per step with the time so far: a fresh set-up takes about 2 minutes, a repeated one a second
  printf '[setup %3ss] %s\n' "$((SECONDS - started))" "$*"
}

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  step "creating .venv with $("$python" --version 2>&1) (step 1 of 3)"
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

quiet_pip() {  # pip's notes about this machine's missing local index folders are noise; real errors still show
  local log
  if ! log=$("${pip[@]}" "$@" 2>&1); then
    echo "$log" | grep -v "is ignored: it is neither a file nor a directory" >&2
    exit 1
  fi
}

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  step "installing torch 2.13.0, CPU build (step 2 of 3, under a minute)"
  quiet_pip install "torch==2.13.0"
fi

# Reinstall only when the project's requirements or the requested extra changed.
stamp=".venv/.cosmos3-installed${extra:+-test}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]] || ! .venv/bin/python -c "import cosmos3" 2>/dev/null; then
  step "installing open-cosmos3${extra:+ with its test extra} and its dependencies: diffusers, transformers, PyAV," \
       "FastAPI, ... (step 3 of 3, about 1-2 min on a fresh machine)"
  quiet_pip install -e ".${extra}"
  if [[ -n "$extra" ]]; then
    # The robot tests drive our policy server with the real openpi client. Its package pins numpy<2 although the
    # client code runs on numpy 2 and needs nothing beyond msgpack and websockets (in the test extra): no deps.
    quiet_pip install --no-deps "openpi-client==0.1.2"
  fi
  echo "$want" > "$stamp"
  step "done: .venv is ready"
fi
