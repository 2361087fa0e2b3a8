#!/usr/bin/env bash
# Every GPU figure of the project in one run, under 8 minutes on one H100/H200.
#
#   bash benchmarks/gpu.sh --prepare   # dev machine: writes .gpu/ (wheels, the tiny checkpoint)
#   bash benchmarks/gpu.sh             # GPU machine (device tool: carry [".gpu"])
#
# The GPU machine has torch and transformers but no network: --prepare packs what else the
# benchmarks import (this project as a wheel; gymnasium, tantivy, rapidfuzz, tqdm) and the
# tiny checkpoint (its tokenizer is trained locally; no weights are downloaded anywhere).
# It prints, each part under its own time limit:
#   1. rollout tokens/s of the engine vs a plain `generate` loop at 64 envs (FrozenLake,
#      the tiny model): benchmarks/rollout_throughput.py        (target: at least 5x)
#   2. SFT MFU in bf16 for a ~0.5B Llama built from a config: benchmarks/sft_mfu.py
#                                                               (target: at least 40%)
#   3. GRPO iteration time at 64 tasks x 8 samples (FrozenLake, multi turn, the tiny
#      model): benchmarks/grpo_throughput.py --device cuda
set -uo pipefail
cd "$(dirname "$0")/.."
GPU_DIR=${GPU_DIR:-.gpu}
PY=${PYTHON:-python3}

prepare() {
  local py=${PYTHON:-.venv/bin/python}
  rm -rf "$GPU_DIR" && mkdir -p "$GPU_DIR/wheels" "$GPU_DIR/cache/tiny" || exit 1
  "$py" -m pip wheel -q --no-deps -w "$GPU_DIR/wheels" . || exit 1
  "$py" -m pip download -q --no-deps -d "$GPU_DIR/wheels" gymnasium cloudpickle typing-extensions \
    farama-notifications tqdm || exit 1
  for v in 3.10 3.11 3.12 3.13; do  # the GPU machine's Python is not known in advance
    "$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$v" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux_2_28_x86_64 -d "$GPU_DIR/wheels" tantivy rapidfuzz ||
      echo "no wheels of tantivy/rapidfuzz for Python $v"
  done
  local tiny
  tiny=$("$py" -c "from earlyexp.agents.models import resolve_model; print(resolve_model('tiny'))") || exit 1
  cp -r "$tiny" "$GPU_DIR/cache/tiny/"
  du -sh "$GPU_DIR"
}

part() {  # part SECONDS TITLE COMMAND...
  local limit=$1 title=$2
  shift 2
  echo -e "\n## $title\n"
  local start=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "($title: rc=$rc (124: past its ${limit} s limit), $((SECONDS - start)) s)"
}

if [[ ${1:-} == --prepare ]]; then
  prepare
  exit
fi

if ! "$PY" -c "import earlyexp.agents, gymnasium" 2>/dev/null; then
  [[ -d $GPU_DIR/wheels ]] || { echo "Expect $GPU_DIR/ from 'bash benchmarks/gpu.sh --prepare'"; exit 2; }
  "$PY" -m pip install -q --no-index --find-links "$GPU_DIR/wheels" earlyexp || exit 2
fi
export EARLYEXP_CACHE=$PWD/$GPU_DIR/cache TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
part 170 "Rollout: engine vs plain generate, 64 envs" \
  "$PY" benchmarks/rollout_throughput.py --devices cuda --envs 64 --workers 0
part 150 "SFT MFU, bf16, ~0.5B from a config" "$PY" benchmarks/sft_mfu.py
part 130 "GRPO iteration, 64 tasks x 8 samples" "$PY" benchmarks/grpo_throughput.py \
  --device cuda --skip-single --tasks 64 --G 8 --iterations 2
