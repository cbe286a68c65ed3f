#!/usr/bin/env bash
# GPU readiness check (issue #24): environment, bf16 correctness against float32, speed at the release's shapes,
# and a few FSDP2 training steps, each step with its own time budget; the whole run stays under 9 minutes.
#   scripts/gpu_check.sh OUT_DIR                 on a CUDA machine
#   scripts/gpu_check.sh OUT_DIR --cpu --tiny    the rehearsal on the CPU (toy shapes, a few minutes)
# Results: OUT_DIR/results.jsonl (one JSON line per result), OUT_DIR/table.txt (printed too), OUT_DIR/log.txt.
# Extra flags go to benchmarks/gpu_check.py (--only env,correctness  --total-budget S  --seed N).
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
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
case " $* " in
  *" --cpu "*) export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" ;;  # shared CPU machines: one thread per process
esac
exec "$python" benchmarks/gpu_check.py "$out" "$@"
