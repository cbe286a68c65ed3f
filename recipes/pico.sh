#!/usr/bin/env bash
# Train the embedded pico model from nothing on the synthetic world (about 2 hours on 2 CPU cores; every stage
# resumes, so an interrupted run continues where it stopped). The result lands in runs/pico/pico; copy it to
# src/cosmos3/weights/pico to make it the default of every command.
#   bash recipes/pico.sh            the full run
#   bash recipes/pico.sh --smoke    every stage at toy size (minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/cosmos3 train --recipe pico --output "${PICO_OUTPUT:-runs/pico}" "$@"
