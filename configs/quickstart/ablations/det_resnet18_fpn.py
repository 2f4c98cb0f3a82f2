# Neck ablation (docs/quickstart.md): a ResNet-18 from scratch with the same FPN and heads, as a
# reference for what the schedule can reach without pretraining.
_base_ = ['./det_scenes300.py']
model = dict(
    backbone=dict(_delete_=True, type='mmdet.ResNet', depth=18, num_stages=4,
                  out_indices=(0, 1, 2, 3), norm_cfg=dict(type='BN', requires_grad=True),
                  norm_eval=False, style='pytorch'),
    neck=dict(in_channels=[64, 128, 256, 512]))
