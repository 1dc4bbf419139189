#!/usr/bin/env bash
# What a session with a GPU runs through the device tool, one stage per call (each fits the 10-minute
# limit of one call).  Everything it measures or trains comes back under $OUT (at most 8 files).
#
#   bench-a         CUDA tests (sync detector), epoch vs reference loop (plain, bf16+NHWC+fused, compiled),
#                   N models at once vs one after another
#   bench-b         Fixup ResNet-20 x 5 seeds (200-epoch projection), projected paper-profile GPU-hours
#   wheels          install carried wheels (.carry/wheels/*.whl) into .gpu-site, which stays on the machine
#                   while it is warm: opencv-contrib (selective search, method B) and umap-learn (method A,
#                   MNIST) are not in the device image
#   fill GRID...    train the paper profile of python -m patchinit.fill's grids, stacked by groups, until
#                   STOP_AFTER seconds (default 480); the new records come back as $OUT/runs.tar
#                   (import them here with: python tools/import_runs.py <files_at>/runs.tar)
#
# Data: copy what the stage needs into .carry/data (git-ignored) and name .carry in the call's carry, e.g.
#   mkdir -p .carry/data && cp -r ../shared/data/mnist ../shared/data/cifar10-jpeg.tar.gz .carry/data/
# The commit to record: PATCHINIT_GIT_COMMIT=$(git rev-parse HEAD) in the command (no .git travels).
set -uo pipefail
stage=${1:?stage: bench-a, bench-b, wheels or fill GRID...}
shift
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/lib:$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}"
export PATCHINIT_DATA=${PATCHINIT_DATA:-$PWD/.carry/data}
export PATCHINIT_CACHE=${PATCHINIT_CACHE:-$PWD/.gpu-cache}
export PATCHINIT_CHECKPOINTS=${PATCHINIT_CHECKPOINTS:-$PWD/.gpu-checkpoints}
export PATCHINIT_PATTERN_CACHE=${PATCHINIT_PATTERN_CACHE:-$PATCHINIT_CACHE/method-a-patterns}
PY=${PY:-python3}

bench() {  # bench NAME SECONDS SCRIPT ARGS...: log to $OUT/NAME.txt, show the RESULT lines
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$PY" "$@" >"$OUT/$name.txt" 2>&1
    echo "   exit $? after ${SECONDS}s"
    grep -E "^RESULT|^# " "$OUT/$name.txt" | tail -40
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; "$PY" -c \
  "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; date -u; } | tee "$OUT/env.txt"

case "$stage" in
bench-a)
    timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_syncs.py tests/test_multi.py tests/test_train.py \
        >"$OUT/pytest.txt" 2>&1
    tail -3 "$OUT/pytest.txt"
    bench epoch 200 benchmarks/bench_epoch.py --device cuda --images 20000 --test-images 10000 --workers 8 \
        --threads 8 --repeats 2
    bench epoch_fast 200 benchmarks/bench_epoch.py --device cuda --images 20000 --test-images 10000 --workers 8 \
        --threads 8 --repeats 2 --fast --compile
    bench multi 150 benchmarks/bench_multi.py --device cuda --precision bf16 --steps 40 --n 1 5 15
    ;;
bench-b)
    bench fixup 240 benchmarks/bench_fixup_seeds.py --device cuda --epochs 3
    bench projection 330 benchmarks/bench_projection.py --device cuda --steps 20 --repeats 3
    ;;
wheels)
    "$PY" -m pip install --no-deps --no-index --target .gpu-site .carry/wheels/*.whl 2>&1 | tail -2
    "$PY" -c "import cv2, umap; cv2.ximgproc.segmentation; print('cv2', cv2.__version__, 'umap ok')"
    ;;
fill)
    start=$(date +%s)
    ls results/runs | sort >/tmp/runs-before.txt
    timeout 590 "$PY" -m patchinit.fill "$@" --profile paper --device cuda \
        --stop-after "${STOP_AFTER:-480}" 2>&1 | tee "$OUT/fill.txt" | tail -40
    ls results/runs | sort | comm -13 /tmp/runs-before.txt - >/tmp/runs-new.txt
    tar -cf "$OUT/runs.tar" -C results/runs -T /tmp/runs-new.txt
    echo "new records: $(wc -l </tmp/runs-new.txt) in $(($(date +%s) - start)) s"
    ;;
*)
    echo "unknown stage $stage" >&2
    exit 2
    ;;
esac
