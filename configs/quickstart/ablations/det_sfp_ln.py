# Neck ablation of quickstart step 2 (docs/quickstart.md): the paper's recipe, ViTDet's simple
# pyramid on VMINet-Ti's last (stride-32, 4x4 at 128 px) map, with its channel LayerNorm.
_base_ = ['./det_scenes300.py']
model = dict(
    backbone=dict(out_indices=(3, )),
    neck=dict(_delete_=True, type='SimpleFeaturePyramid', in_channels=192, out_channels=128,
              scale_factors=(8, 4, 2, 1), num_outs=5, norm_cfg=dict(type='LayerNorm2d', eps=1e-6)))
