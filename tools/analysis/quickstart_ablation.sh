#!/usr/bin/env bash
# Neck ablation of the quickstart detector (docs/quickstart.md): trains configs/quickstart/ablations/
# det_*.py and the quickstart config itself side by side on one GPU (they are small), then prints
# each run's COCO bbox/segm mAP on the bundled val split.
# Needs data/shapes (tools/data/make_shapes_dataset.py) and the step-1 classifier checkpoint
# checkpoints/quickstart/vminet_ti_shapes_cls.pth. Usage: tools/analysis/quickstart_ablation.sh [WORK]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-work_dirs/ablation}
PY=${PYTHON:-python}
mkdir -p "$WORK"
configs=(configs/quickstart/mask_rcnn_vminet_ti_shapes.py configs/quickstart/ablations/det_*.py)
for config in "${configs[@]}"; do
    name=$(basename "$config" .py)
    "$PY" tools/train.py "$config" --work-dir "$WORK/$name" > "$WORK/$name.log" 2>&1 &
done
wait
for config in "${configs[@]}"; do
    name=$(basename "$config" .py)
    metrics=$(grep -o 'coco/bbox_mAP: [0-9.]*\|coco/segm_mAP: [0-9.]*' "$WORK/$name.log" | tail -2 | tr '\n' ' ')
    printf '%-32s %s\n' "$name" "${metrics:-failed, see $WORK/$name.log}"
done
