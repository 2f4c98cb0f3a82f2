#!/usr/bin/env bash
# Wheels of the OpenMMLab stack for a GPU machine without internet that already has torch.
#
#   bash tools/offline_wheels.sh OUT_DIR [MMCV_WHEEL]      # PY_VERSION=3.12 by default
#
# Downloads (on a machine with an index) the exact versions of requirements/constraints.txt of
# mmengine, mmdet, mmsegmentation, mmpretrain and the pure-Python or manylinux packages they
# import at run time (mmseg's evaluation needs prettytable; importlib-metadata 10 needs
# lazy-importer), for CPython PY_VERSION on x86-64 Linux, without dependencies: the target's own
# torch, numpy and friends stay as they are. mmcv has to be built against the target's torch:
# pass that wheel as MMCV_WHEEL and it is copied beside the rest. On the GPU machine:
#
#   pip install --no-index --no-deps --target /tmp/site OUT_DIR/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONSTRAINTS="$ROOT/requirements/constraints.txt"
PY_VERSION="${PY_VERSION:-3.12}"
PACKAGES=(mmengine mmdet mmsegmentation mmpretrain addict termcolor yapf platformdirs setuptools
          pycocotools shapely terminaltables ftfy wcwidth importlib_metadata lazy-importer mat4py
          model-index ordered-set prettytable)

die() { printf 'offline_wheels: %s\n' "$*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: bash tools/offline_wheels.sh OUT_DIR [MMCV_WHEEL]"
OUT=$1
MMCV_WHEEL=${2:-}
[ -z "$MMCV_WHEEL" ] || [ -f "$MMCV_WHEEL" ] || die "no mmcv wheel at $MMCV_WHEEL"

pins=()
for name in "${PACKAGES[@]}"; do
    pin=$(grep -i -E "^${name}==" "$CONSTRAINTS" | head -n1) || true
    [ -n "$pin" ] || die "no pin for $name in $CONSTRAINTS"
    pins+=("$pin")
done

mkdir -p "$OUT"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$PY_VERSION" "${platforms[@]}" --dest "$OUT" "${pins[@]}" \
    || die "pip download failed (see above): is an index reachable?"
[ -z "$MMCV_WHEEL" ] || cp "$MMCV_WHEEL" "$OUT"/
count=$(find "$OUT" -maxdepth 1 -name '*.whl' | wc -l)
echo "offline_wheels: $count wheels in $OUT ($(du -sh "$OUT" | cut -f1)) for CPython $PY_VERSION"
[ -n "$MMCV_WHEEL" ] || echo "offline_wheels: no mmcv wheel given: build one for the target's torch"
