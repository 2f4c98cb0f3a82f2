# Neck ablation (docs/quickstart.md): the ResNet-18 reference through the simple pyramid on its
# last map (LayerNorm), to tell the neck's effect from the backbone's.
_base_ = ['./det_resnet18_fpn.py']
model = dict(
    backbone=dict(out_indices=(3, )),
    neck=dict(_delete_=True, type='SimpleFeaturePyramid', in_channels=512, out_channels=128,
              scale_factors=(8, 4, 2, 1), num_outs=5, norm_cfg=dict(type='LayerNorm2d', eps=1e-6)))
