# Mask R-CNN 1x on COCO with VMINet-B (paper Table 5), ImageNet-pretrained backbone from
# checkpoints/vminet_b_in1k.py's output or tools/model_converters/vminet2mmvminet.py.
_base_ = [
    './_base_/models/mask_rcnn_vminet_sfp.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/mask_rcnn_adamw_1x.py',
    './_base_/default_runtime_det.py',
]
model = dict(
    backbone=dict(
        arch='b',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='checkpoints/vminet_b_in1k.pth')),
    neck=dict(in_channels=768))
