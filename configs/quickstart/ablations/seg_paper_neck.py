# Neck ablation (docs/quickstart.md): the quickstart UperNet with the paper's neck instead of the
# four stage maps: the simple pyramid on VMINet-Ti's last (stride-32) map, LayerNorm.
_base_ = ['../upernet_vminet_ti_shapes.py']
model = dict(
    backbone=dict(out_indices=(3, )),
    neck=dict(_delete_=True, type='SimpleFeaturePyramid', in_channels=192, out_channels=64,
              scale_factors=(8, 4, 2, 1), num_outs=4, norm_cfg=dict(type='LayerNorm2d', eps=1e-6)),
    decode_head=dict(in_channels=[64, 64, 64, 64]),
    auxiliary_head=dict(in_channels=64))
