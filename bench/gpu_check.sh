#!/usr/bin/env bash
# The checks only an accelerator can make, in one call of a few minutes (a lent GPU's time is short):
#   1. bench/train_throughput.py --preset=gpu: MFU of the 353M bf16 step (target >= 55%);
#   2. the first isoflop_gpu budget's largest and smallest planned runs through the same bench: step
#      time, MFU and peak memory against scaling.memory's planned bytes and XLA's own figure;
#   3. the smallest of those runs through the trainer itself (scaling.train) for $TRAIN_STEPS steps on
#      the stdlib corpus: the whole path (data, prefetch, eval, checkpoint, metrics) and its loss curve;
#   4. the 353M step with remat, which no GPU has measured (scaling.memory's remat term is unchecked).
# Each part has its own time limit and log, so one failure does not cost the others. On one H200
# (2026-12-04, then with scanned plan runs and Triton GEMMs off as part 4) the parts took 130, 61, 31,
# 144 and 131 s, 504 s in all, plus ~2 minutes to start the machine. Triton GEMMs off gained 0.5 MFU
# points there, inside the rounds' spread: XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bash ... to redo.
#
#   bash bench/gpu_check.sh PLAN.json OUTDIR
# PLAN.json: `python -m experiments.plan --config=experiments/configs/isoflop_gpu.py
#   --config.study.dir=D --config.study.train_tokens_per_epoch=100000000000` planned on any machine.
# Where the image lacks this project's needs, .whl/ holds them as Python 3.12 wheels (installed first;
# `echo /.whl/ >> .git/info/exclude`, carried by the device tool). On 2026-12-04 the H200 image had
# JAX 0.11.2 and flax 0.12.10 and lacked: grain ml-collections optax orbax-checkpoint tensorboardX
# array_record tensorflow-datasets importlib_resources portpicker dm-tree immutabledict simple_parsing
# tensorflow-metadata termcolor toml docstring-parser googleapis-common-protos (`pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ... -d .whl` at setup.py's
# pins) and promise (sdist only: `pip wheel --no-deps -w .whl promise==2.3`). Do not carry flax: the
# pinned 0.12.8 does not import on JAX 0.11.2 (jax.experimental.hijax has no HiPrimitive).
set -u
PLAN=$1; OUT=$2; TRAIN_STEPS=${TRAIN_STEPS:-200}
SMALL=${SMALL:-C6e+18-N8.53e+07}; LARGE=${LARGE:-C6e+18-N6.8e+08}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ -d .whl ]; then
  rm -rf /tmp/site; $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
part() {  # part NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, print its tail
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "=== $name: rc $rc, $(( $(date +%s) - t0 )) s"
  grep -v -e "^WARNING:absl" -e "^I0000" -e "^W0000" "$OUT/$name.log" | tail -n 14
}
{ nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
  $PY -c "import jax, flax, optax; from flax import nnx; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} 2>&1 | tail -n 4
part bench_353m 150 $PY bench/train_throughput.py --preset=gpu
part large 170 $PY bench/train_throughput.py --plan="$PLAN" --run="$LARGE" --rounds=1 --steps=2
part small 100 $PY bench/train_throughput.py --plan="$PLAN" --run="$SMALL" --rounds=3 --steps=5
# The launcher's own command line for the run (workdir beside the plan: PLAN_DIR/runs/ID), shortened.
ARGV=$($PY bench/train_throughput.py --plan="$PLAN" --run="$SMALL" --trainer_argv)
WORKDIR="$(dirname "$PLAN")/runs/$SMALL"
rm -rf "$WORKDIR"
part train_small 200 $PY $ARGV --config.data.dataset=stdlib --config.train.steps="$TRAIN_STEPS" --config.train.warmup_steps=20 \
  --config.log.every_steps=20 --config.eval.every_steps=100 --config.eval.tokens=262144 \
  --config.checkpoint.every_steps=100000
cp "$WORKDIR/run.json" "$WORKDIR/metrics.jsonl" "$OUT/" 2>/dev/null
part bench_353m_remat 150 $PY bench/train_throughput.py --preset=gpu --remat --rounds=2
