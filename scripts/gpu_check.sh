#!/usr/bin/env bash
# GPU check: on any CUDA machine, generate a MUSDB18-format set, train experiments/diffmsst_base.gin
# for STEPS steps at bf16 and at fp16 (and with DDP when there are two or more GPUs), separate a
# 30-s song, and print steps/s, segments/s, peak GPU memory and the share of step time spent
# waiting for data. Exits non-zero on any failure (no CUDA device: exit 3). Figures: docs/gpu.md.
#
#   scripts/gpu_check.sh [WORK_DIR]            # default WORK_DIR: a new temp folder
#   STEPS=200 PYTHON=.venv/bin/python scripts/gpu_check.sh /scratch/gpu-check
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STEPS=${STEPS:-200}

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to PyTorch (torch.cuda.is_available() is False); run it on a CUDA machine" >&2
    exit 3
fi
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
BF16=$("$PY" -c "import torch; print(int(torch.cuda.is_bf16_supported()))")
WORK=${1:-$(mktemp -d -t gpu-check-XXXXXX)}
mkdir -p "$WORK"
echo "gpu_check: $GPUS GPU(s): $("$PY" -c "import torch; print(torch.cuda.get_device_name(0))"); work dir $WORK"

# 8 train songs (the validation split comes out of them) and 2 test songs of 30 s at 44.1 kHz
"$PY" -m toolkit.cli data synth --out "$WORK/musdb" --tracks 8 --test-tracks 2 --seconds 30
export MUSDB_PATH="$WORK/musdb"

# validation, a preview and the final checkpoint come after the last timed step
COMMON=(experiments/diffmsst_base.gin --gin_param "TRAIN_STEPS=$STEPS" --gin_param "CHECKPOINT_EVERY=0"
        --gin_param "VALIDATE_EVERY=$STEPS" --gin_param "PREVIEW_EVERY=$STEPS" --gin_param "FINAL_EVALUATION=False"
        --gin_param "TrainConfig.warmup_steps=20")

train() {  # NAME PRECISION [launcher...]
    local name=$1 precision=$2
    shift 2
    echo "gpu_check: training $name ($precision, $STEPS steps)"
    "$@" scripts/gpu_check.py "${COMMON[@]}" --gin_param "TrainConfig.precision='$precision'" \
        --out "$WORK/run-$name" 2>&1 | tee "$WORK/$name.log"
    test -f "$WORK/run-$name/checkpoints/last.pt"
}

if [ "$BF16" = 1 ]; then
    train bf16 bf16 "$PY"
else
    echo "gpu_check: this GPU has no bf16; bf16 run skipped"
fi
train fp16 fp16 "$PY"
if [ "$GPUS" -ge 2 ]; then
    PRECISION=$([ "$BF16" = 1 ] && echo bf16 || echo fp16)
    train ddp2 "$PRECISION" "$PY" -m torch.distributed.run --standalone --nproc-per-node 2
else
    echo "gpu_check: one GPU; DDP run skipped"
fi

echo "gpu_check: separating a 30-s song"
SONG=$(find "$WORK/musdb/test" -name mixture.wav | sort | head -n 1)
CKPT=$(ls "$WORK"/run-*/checkpoints/last.pt | head -n 1)
START=$(date +%s.%N)
"$PY" -m toolkit.cli separate "$SONG" --checkpoint "$CKPT" --out "$WORK/separated"
END=$(date +%s.%N)
test "$(find "$WORK/separated" -name '*.wav' | wc -l)" -ge 2
"$PY" scripts/gpu_check.py report "$SONG" "$START" "$END" "$WORK"/*.log
echo "gpu_check: all checks passed"
