#!/usr/bin/env bash
# pico v2 (issue 21; docs/PICO.md "pico v2") on this machine's CPU, the reference: the stages the v2 design has so far
# (world, vae), each resumable; a stage stops after 2.5 h with its state saved, and the same command continues it.
#   PICO_OUTPUT=/somewhere/outside/the/repo bash recipes/pico_v2.sh [--smoke] [--stage-hours H] [--export DEST]
# On a shared machine give it one core: OMP_NUM_THREADS=1 nohup bash recipes/pico_v2.sh > v2.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m cosmos3.train.pico --design v2 --output "${PICO_OUTPUT:-runs/pico-v2}" "$@"
