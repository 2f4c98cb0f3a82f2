#!/usr/bin/env bash
# The README's first command: the whole job end to end on the bundled shapes dataset, on CPU.
#   bash tools/quickstart.sh
# setup (if needed) -> generate data -> pretrain VMINet-Ti -> Mask R-CNN -> UperNet -> evaluate
# -> draw pictures (predictions, Grad-CAM, VMI-SA context) -> ONNX export of the classifier,
# checked with onnxruntime -> one summary line. Every step's log is in work_dirs/quickstart/.
# Run again, it skips each training step whose work_dirs/quickstart/<step>/test/metrics.json is
# newer than the step's config, the data and (for det/seg) the classifier checkpoint: an
# interrupted run goes on where it stopped. Changes to _base_ files are not tracked:
# QUICKSTART_REDO=1 bash tools/quickstart.sh runs every step again (the data too).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash tools/setup_env.sh
PY="$ROOT/.venv/bin/python"
WORK=work_dirs/quickstart
OUT=outputs/quickstart
CKPT=checkpoints/quickstart
mkdir -p "$WORK" "$OUT" "$CKPT"
START=$(date +%s)
REDO=${QUICKSTART_REDO:-0}
say() { printf '\n[quickstart] %s\n' "$*"; }

say "1/6 bundled dataset -> data/shapes"
FORCE=()
[ "$REDO" = 1 ] && FORCE=(--force)
"$PY" tools/data/make_shapes_dataset.py --out data/shapes "${FORCE[@]}" || {
    echo "[quickstart] data/shapes was not made; one from an older quickstart (other options)" \
        "is replaced by: QUICKSTART_REDO=1 bash tools/quickstart.sh" >&2
    exit 1
}

last_checkpoint() {  # the checkpoint mmengine recorded as the last one of a work dir
    local f="$1/last_checkpoint"
    [ -f "$f" ] || { echo "[quickstart] no checkpoint in $1" >&2; exit 1; }
    cat "$f"
}

needs_run() {  # NAME INPUT...: false when WORK/NAME's test metrics are newer than every INPUT
    local metrics="$WORK/$1/test/metrics.json" input
    shift
    [ "$REDO" = 1 ] && return 0
    [ -f "$metrics" ] || return 0
    for input in "$@"; do
        [ "$input" -nt "$metrics" ] && return 0
    done
    echo "[quickstart] done before: $metrics is newer than $*; skipped (QUICKSTART_REDO=1 redoes it)"
    return 1
}

train_and_test() {  # NAME CONFIG [INPUT...]: train, then evaluate with tools/test.py into WORK/NAME
    local name=$1 config=$2
    shift 2
    needs_run "$name" "$config" data/shapes/meta.json "$@" || return 0
    "$PY" tools/train.py "$config" --work-dir "$WORK/$name"
    "$PY" tools/test.py "$config" "$(last_checkpoint "$WORK/$name")" \
        --work-dir "$WORK/$name/test" > "$WORK/$name/test.log" 2>&1 \
        || { tail -n 30 "$WORK/$name/test.log"; exit 1; }
    tail -n 1 "$WORK/$name/test.log"
}

say "2/6 pretrain VMINet-Ti classifier (configs/quickstart/vminet_ti_shapes_cls.py)"
train_and_test cls configs/quickstart/vminet_ti_shapes_cls.py
if [ "$WORK/cls/test/metrics.json" -nt "$CKPT/vminet_ti_shapes_cls.pth" ]; then  # (also if absent)
    cp "$(last_checkpoint "$WORK/cls")" "$CKPT/vminet_ti_shapes_cls.pth"
fi

say "3/6 Mask R-CNN VMINet-Ti from that checkpoint (configs/quickstart/mask_rcnn_vminet_ti_shapes.py)"
train_and_test det configs/quickstart/mask_rcnn_vminet_ti_shapes.py "$CKPT/vminet_ti_shapes_cls.pth"

say "4/6 UperNet VMINet-Ti from that checkpoint (configs/quickstart/upernet_vminet_ti_shapes.py)"
train_and_test seg configs/quickstart/upernet_vminet_ti_shapes.py "$CKPT/vminet_ti_shapes_cls.pth"

say "5/6 pictures and ONNX export"
IMG_DET=data/shapes/det/val/000000.jpg
IMG_SEG=data/shapes/seg/images/validation/000000.jpg
"$PY" tools/demo.py "$IMG_DET" configs/quickstart/mask_rcnn_vminet_ti_shapes.py \
    "$(last_checkpoint "$WORK/det")" --out "$OUT/detection.png"
"$PY" tools/demo.py "$IMG_SEG" configs/quickstart/upernet_vminet_ti_shapes.py \
    "$(last_checkpoint "$WORK/seg")" --out "$OUT/segmentation.png"
CLS_CFG=configs/quickstart/vminet_ti_shapes_cls.py
IMG_CLS=data/shapes/cls/val/star/000003.jpg
"$PY" tools/analysis/vis_cam.py "$CLS_CFG" "$CKPT/vminet_ti_shapes_cls.pth" "$IMG_CLS" \
    --target-stage 1 --out-dir "$OUT/gradcam"
"$PY" tools/analysis/vis_context.py "$CLS_CFG" "$CKPT/vminet_ti_shapes_cls.pth" "$IMG_CLS" \
    --out "$OUT/context.png"
"$PY" tools/deployment/export_onnx.py "$CLS_CFG" "$CKPT/vminet_ti_shapes_cls.pth" --shape 64 64 \
    --dynamic --verify --out "$OUT/vminet_ti_shapes_cls.onnx"

say "6/6 summary ($(( $(date +%s) - START )) s)"
"$PY" - "$WORK" "$OUT" <<'EOF'
import json, os.path as osp, sys
work, out = sys.argv[1:]
m = {name: json.load(open(osp.join(work, name, 'test', 'metrics.json')))
     for name in ('cls', 'det', 'seg')}
print(f"top1={m['cls']['accuracy/top1'] / 100:.3f} bbox_mAP={m['det']['coco/bbox_mAP']:.3f} "
      f"segm_mAP={m['det']['coco/segm_mAP']:.3f} mIoU={m['seg']['mIoU'] / 100:.3f} "
      f"pictures: {osp.join(out, 'detection.png')} {osp.join(out, 'segmentation.png')} "
      f"{osp.join(out, 'gradcam')}/ {osp.join(out, 'context.png')}")
EOF
