#!/usr/bin/env bash
# Stage 1 (π³ motion pretraining) with finer π³ grids, on one GPU, at the step counts the CPU
# recipe affords in its 25 minutes: which grid gives the best motion features for the same
# CPU time? Measured on this project's 2-core CPU (batch 8, one thread + one render worker):
# 9x9 patches 1.05 s/step (1425 steps), 14x14 2.6 s/step (575), 18x18 4.7 s/step (320).
# The GPU only runs those same float32 steps faster; the curriculum keeps its share (28 %).
#   bash training/device_stage1_grid.sh      # results: $OUT/<variant>/summary.json, log.csv
#   VARIANTS=round2 bash training/device_stage1_grid.sh   # the second round
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device}
mkdir -p "$OUT"
[ -d .devsite ] && export PYTHONPATH="$PWD/.devsite${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}
nvidia-smi --query-gpu=name --format=csv,noheader > "$OUT/gpu.txt" 2>&1; nproc >> "$OUT/gpu.txt"
run() {  # run <name> <overrides...>
  local name=$1 t0=$SECONDS; shift
  timeout "${LIMIT:-430}" $PY -m training.pretrain_pi3 --config-name pi3_micro device=cuda threads=1 \
    val_windows=256 max_minutes="${MINUTES:-6}" plot_every=100000 ckpt_every=100000 \
    out_dir="$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
  echo "$name rc=$? in $((SECONDS - t0)) s" | tee -a "$OUT/runs.txt"
}
VARIANTS=${VARIANTS:-grid}
if [ "$VARIANTS" = grid ]; then
run g9 model=micro max_steps=1425 num_workers=5 &
run g14 model=config/micro_g14.yaml max_steps=575 curriculum_steps=160 num_workers=3 &
run g18 model=config/micro_g18.yaml max_steps=320 curriculum_steps=90 num_workers=2 &
run g14b4 model=config/micro_g14.yaml max_steps=1150 batch_size=4 curriculum_steps=320 \
  data.windows_per_scene=1 num_workers=4 &
else  # round 2: batch 4 on the 9x9 grid, batch 2 on 14x14, and a second seed of g14b4
  # CPU: 9x9 batch 4 0.5 s/step (2900 steps), 14x14 batch 2 0.65 s/step (2200 steps)
run g9b4 model=micro max_steps=2900 batch_size=4 curriculum_steps=800 \
  data.windows_per_scene=1 num_workers=7 &
run g14b2 model=config/micro_g14.yaml max_steps=2200 batch_size=2 curriculum_steps=620 \
  data.windows_per_scene=1 num_workers=3 &
run g14b4s1 model=config/micro_g14.yaml max_steps=1150 batch_size=4 curriculum_steps=320 \
  data.windows_per_scene=1 num_workers=3 seed=1 &
fi
wait
# Only the logs come back (the weights are a by-product: the shipped models train on the CPU).
rm -f "$OUT"/*/pi3.safetensors "$OUT"/*/probe.safetensors "$OUT"/*/*.png
for d in g9 g14 g18 g14b4 g9b4 g14b2 g14b4s1; do
  [ -f "$OUT/$d/summary.json" ] || continue
  echo "$d $(tail -c 400 "$OUT/$d/summary.json" 2>/dev/null | tr -d '\n ')"
done
