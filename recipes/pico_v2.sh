#!/usr/bin/env bash
# pico v2 (issue 21; docs/PICO.md "pico v2") on this machine's CPU, the reference: every stage of the v2 design, each
# resumable; a stage stops after 2.5 h with its state saved, and the same command continues it.
#   PICO_OUTPUT=/somewhere/outside/the/repo bash recipes/pico_v2.sh [--smoke] [--stage-hours H] [--export DEST]
# On a shared machine give it one core: OMP_NUM_THREADS=1 nohup bash recipes/pico_v2.sh > v2.log 2>&1 &
# The VAE stage starts from recipes/pico_v2_state when that carries a later step than the run folder holds (a
# session commits it there with `python -m cosmos3.train.pico --design v2 --output RUN --carry-state
# recipes/pico_v2_state`), so a fresh machine continues where the last one stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
carried=()
if [[ -f recipes/pico_v2_state/vae_state.json && " $* " != *" --smoke "* ]]; then
  carried=(--resume-state recipes/pico_v2_state)
fi
exec .venv/bin/python -m cosmos3.train.pico --design v2 --output "${PICO_OUTPUT:-runs/pico-v2}" "${carried[@]}" "$@"
