#!/usr/bin/env bash
# GPU readiness check (issue #24): environment, bf16 correctness against float32, speed at the release's shapes,
# and a few FSDP2 training steps, each step with its own time budget; the whole run stays under 9 minutes.
#   scripts/gpu_check.sh OUT_DIR                 on a CUDA machine
#   scripts/gpu_check.sh OUT_DIR --cpu --tiny    the rehearsal on the CPU (toy shapes, a few minutes)
# Results: OUT_DIR/results.jsonl (one JSON line per result), OUT_DIR/table.txt (printed too), OUT_DIR/log.txt.
# Extra flags go to benchmarks/gpu_check.py (--only env,correctness  --total-budget S  --seed N).
#
# On a lent GPU machine whose image has CUDA torch but not this project's other packages: put their wheels in .whl/
# here first (ignored by git; it travels when the run names it in `carry`), e.g.
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 -d .whl diffusers==0.42.1 importlib_metadata
# and run `scripts/gpu_check.sh $OUT` with carry [".whl"]: the wheels are installed into a temporary folder
# first. PyAV (35 MB) does not fit beside the tree; without it a stand-in module lets the code import (the check
# reads and writes no video), and the env line says so.
set -euo pipefail
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: scripts/gpu_check.sh OUT_DIR [--cpu --tiny] [--only STEPS] [--total-budget S]" >&2
  exit 2
fi
out=$(mkdir -p "$1" && cd "$1" && pwd)  # resolved before the cd below
shift
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ -x "$python" ]] || python=python3
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
case " $* " in
  *" --cpu "*) export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" ;;  # shared CPU machines: one thread per process
esac

scratch=$(mktemp -d /tmp/gpu-check-env.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
if compgen -G ".whl/*.whl" >/dev/null; then
  site="$scratch/site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:$site"  # after src/, and after nothing the image already has
fi
if ! "$python" -c "import av" 2>/dev/null; then
  stub="$scratch/stub"
  mkdir -p "$stub/av/video"
  cat >"$stub/av/__init__.py" <<'PY'
"""Stand-in for PyAV (not installed here): cosmos3.media imports, any video or audio I/O raises."""
GPU_CHECK_STAND_IN = True


class FFmpegError(Exception):
    pass


def __getattr__(name):
    raise ImportError(f"PyAV is not installed here (gpu_check's stand-in has no av.{name})")
PY
  touch "$stub/av/video/__init__.py"
  cat >"$stub/av/video/reformatter.py" <<'PY'
import enum


class Interpolation(enum.IntFlag):
    BILINEAR = 2
    ACCURATE_RND = 0x40000
    FULL_CHR_H_INT = 0x2000
PY
  export PYTHONPATH="$PYTHONPATH:$stub"
fi
"$python" benchmarks/gpu_check.py "$out" "$@"
