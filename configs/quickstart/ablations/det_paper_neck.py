# Neck ablation (docs/quickstart.md): the quickstart Mask R-CNN (1200 scenes, 3 epochs) with the
# paper's neck instead of the FPN: ViTDet's simple pyramid on VMINet-Ti's last (stride-32) map,
# with its channel LayerNorm.
_base_ = ['../mask_rcnn_vminet_ti_shapes.py']
model = dict(
    backbone=dict(out_indices=(3, )),
    neck=dict(_delete_=True, type='SimpleFeaturePyramid', in_channels=192, out_channels=128,
              scale_factors=(8, 4, 2, 1), num_outs=5, norm_cfg=dict(type='LayerNorm2d', eps=1e-6)))
