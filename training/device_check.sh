#!/usr/bin/env bash
# The GPU checks that no CPU can make, as one short script (about 6-8 minutes on one H100/H200):
#   1. gmos-gpu-check: paper-size parts on CUDA vs CPU fp32 (fp32 with TF32 off, bf16, fp16
#      autocast) and the shipped trained micro bundles streamed on CPU vs CUDA;
#   2. gmos-bench at the official resolution on CUDA, fp32 and bf16 (stage timings, FLOPs and
#      fraction of the matmul peak, cache speed-up, end-to-end fps, GPU memory);
#   3. pytest -m gpu (the GPU-only tests);
#   4. training smoke runs on CUDA (bf16 autocast): the micro recipe at batch 32 and the
#      paper recipe (frozen random-weight encoders, synthetic data) for a few steps;
#   5. node_backends: the demo bag through the node on torch CUDA and onnxruntime's CUDA
#      provider (needs rclpy + gmos_msgs on the machine and onnxruntime-gpu; TensorRT is not
#      installed on the lent machines, so the tensorrt backend is not run: the log says so).
# Results land flat in $OUT (default out/device): gpu_check.{json,png}, bench_{fp32,bf16}.json,
# breakdown_{fp32,bf16}.png, log.txt and extras.tar.gz (micro bench, training logs, pytest).
# Each step has its own time limit and a failure does not stop the next one.
#   bash training/device_check.sh                # on a machine with a CUDA GPU
#   STEPS="gpu_check bench_paper_fp16" bash training/device_check.sh    # some steps only
# Steps: gpu_check bench_paper_fp32 bench_paper_bf16 bench_paper_fp16 (not by default)
#        pytest_gpu train_micro train_paper bench_micro node_backends
# Packages torch/onnx/onnxruntime/opencv/scipy come from the machine; sam2, hydra, omegaconf
# and iopath may be put in .devsite/ (pure Python, copied from a set-up venv) when it lacks them.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-out/device}
mkdir -p "$OUT" /tmp/gmos_dev
[ -d .devsite ] && export PYTHONPATH="$PWD/.devsite:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY=${PY:-python3}
LOG="$OUT/log.txt"
X=/tmp/gmos_dev
STEPS=${STEPS:-gpu_check bench_paper_fp32 bench_paper_bf16 pytest_gpu train_micro train_paper bench_micro node_backends}
step() {  # step <name> <seconds> <command...>
  local name=$1 secs=$2; shift 2
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  echo "=== $name ($(date +%T), limit ${secs}s)" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$secs" "$@" >>"$LOG" 2>&1
  echo "=== $name rc=$? in $((SECONDS - t0)) s" | tee -a "$LOG"
}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY -c "import torch, onnxruntime as o; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'ort', o.__version__, o.get_available_providers())"
  nproc
} >>"$LOG" 2>&1
step gpu_check 150 $PY -m training.gpu_check --device cuda --config paper --clips 2 --out $X/gc
cp $X/gc/gpu_check.json $X/gc/gpu_check.png "$OUT/" 2>/dev/null
for p in fp32 bf16 fp16; do
  step "bench_paper_$p" 100 $PY -m training.bench --device cuda --backends torch --config paper \
    --precision $p --warmup 3 --repeats 10 --e2e-frames 20 --cache-windows 4 --out $X/b_$p
  cp $X/b_$p/bench.json "$OUT/bench_$p.json" 2>/dev/null
  cp $X/b_$p/breakdown.png "$OUT/breakdown_$p.png" 2>/dev/null
done
step pytest_gpu 60 $PY -m pytest -q -m gpu -p no:cacheprovider test/test_backends.py test/test_engines.py
step train_micro 60 $PY -m training.train --config-name gmos_micro pi3_checkpoint=null \
  batch_size=32 num_workers=12 threads=4 max_steps=100 max_minutes=0.75 log_every=5 \
  ckpt_every=100000 plot_every=100000 resume=never out_dir=$X/tm export_bundle=null
step train_paper 100 $PY -m training.train --config-name gmos_paper pi3_checkpoint=null \
  sam2_checkpoint=null '~data' \
  '+data={kind:synthetic,height:378,width:672,duration_s:1.2,fps_choices:[10.0],windows_per_scene:1}' \
  batch_size=4 num_workers=12 max_steps=40 max_minutes=1.0 log_every=5 ckpt_every=100000 \
  plot_every=100000 resume=never out_dir=$X/tp export_bundle=null
step bench_micro 45 $PY -m training.bench --device cuda --backends torch --warmup 2 \
  --repeats 10 --e2e-frames 30 --cache-windows 8 --out $X/bm
step node_backends 120 $PY -m gmos_ros.node_bench --device cuda --ort-provider cuda --out $X/nb
cp $X/nb/node_bench.json "$OUT/node_bench_cuda.json" 2>/dev/null
mkdir -p $X/extras
cp $X/bm/bench.json $X/extras/bench_micro_cuda.json 2>/dev/null
cp $X/tm/log.csv $X/extras/train_micro_cuda.csv 2>/dev/null
cp $X/tp/log.csv $X/extras/train_paper_cuda.csv 2>/dev/null
tar -czf "$OUT/extras.tar.gz" -C $X extras
echo "done $(date +%T)" >>"$LOG"
