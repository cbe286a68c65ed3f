#!/usr/bin/env bash
# pico on one GPU, one command of at most 9 minutes (one H200-class GPU): the v2 design's stages (cosmos3.train.pico,
# docs/PICO.md "pico v2") with bf16 autocast and 16x the CPU recipe's batches, the world generated on every CPU core;
# then the weights are written to DEST in safetensors files under 15 MB each (sharded with an index json, the
# layout diffusers' and transformers' from_pretrained read). Whenever a GPU is at hand, this is what it runs first.
#   bash recipes/pico_gpu.sh DEST [extra options of `python -m cosmos3.train.pico`]
# Run state goes to $PICO_GPU_RUN (default runs/pico-gpu); a stage cut by its time cap (--stage-hours, 0.11 h here)
# or by the command's timeout resumes when the same command runs again (finished stages are skipped; the trainers
# continue from their last checkpoint). v2 has every stage since 2026-12-02 (world ... ship), so a first call may
# end before `ship` and write no weights: call it again. The CPU recipe (recipes/pico_v2.sh) stays the reference.
# CPU check of these steps at toy size (tests/train/test_train_pico.py runs it):
#   PICO_GPU_RUN=/tmp/run bash recipes/pico_gpu.sh /tmp/dest --smoke --device cpu --batch-scale 2 --workers 1
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:?usage: bash recipes/pico_gpu.sh DEST [options]}"
shift
export HF_HUB_OFFLINE=1
exec timeout "${PICO_GPU_TIMEOUT:-540}" .venv/bin/python -m cosmos3.train.pico --design v2 \
    --output "${PICO_GPU_RUN:-runs/pico-gpu}" --device cuda --bf16 --batch-scale 16 --workers "$(nproc)" \
    --vae-steps 3000 --stage-hours 0.11 --export "$dest" --quiet "$@"
