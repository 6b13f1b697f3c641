#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py): the whole product on one NVIDIA GPU at Qwen2.5-0.5B's shape, in a
# few minutes, as a JSON report in bench/results/gpu-check.json.
#
#   scripts/gpu-check.sh             # needs nvidia-smi to see a GPU; installs the GPU engine first
#   scripts/gpu-check.sh --dry-run   # on a CPU: every step but the GPU ones, at the tiny model's shape
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = --dry-run ]; then
  scripts/install.sh
  exec .venv/bin/python -m bench.gpu_check "$@"
fi
if ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L; }; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi sees none); --dry-run checks the rest on a CPU" >&2
  exit 2
fi
FTSERVE_DEVICE=gpu scripts/install.sh
exec timeout 480 .venv/bin/python -m bench.gpu_check "$@"
