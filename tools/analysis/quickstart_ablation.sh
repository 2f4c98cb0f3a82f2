#!/usr/bin/env bash
# Ablations of the quickstart detector and segmentor (docs/quickstart.md): trains the given configs
# (default: the quickstart det and seg configs and every configs/quickstart/ablations/*.py) side by
# side on one GPU (they are small), then prints each run's last validation: COCO bbox/segm mAP or
# mIoU on the bundled val split.
# Needs data/shapes (tools/data/make_shapes_dataset.py; the *scenes300* configs and the neck
# ablations read data/shapes_300, made with --num-train-scenes 300) and the step-1 classifier
# checkpoint checkpoints/quickstart/vminet_ti_shapes_cls.pth.
# Usage: tools/analysis/quickstart_ablation.sh [WORK [CONFIG...]]
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-work_dirs/ablation}
shift || true
PY=${PYTHON:-python}
mkdir -p "$WORK"
if [ $# -gt 0 ]; then
    configs=("$@")
else
    configs=(configs/quickstart/mask_rcnn_vminet_ti_shapes.py
             configs/quickstart/upernet_vminet_ti_shapes.py configs/quickstart/ablations/*.py)
fi
for config in "${configs[@]}"; do
    [ -f "$config" ] || { echo "no such config: $config" >&2; exit 1; }
done
for config in "${configs[@]}"; do
    name=$(basename "$config" .py)
    "$PY" tools/train.py "$config" --work-dir "$WORK/$name" > "$WORK/$name.log" 2>&1 &
done
wait
for config in "${configs[@]}"; do
    name=$(basename "$config" .py)
    metrics=$(grep -o 'coco/bbox_mAP: [0-9.]*\|coco/segm_mAP: [0-9.]*\|mIoU: [0-9.]*' \
        "$WORK/$name.log" | tail -2 | tr '\n' ' ')
    printf '%-32s %s\n' "$name" "${metrics:-failed, see $WORK/$name.log}"
done
