# Neck ablation (docs/quickstart.md): the simple pyramid (LayerNorm) on VMINet-Ti's stride-8 map
# (16x16 at 128 px) instead of the last one.
_base_ = ['./det_sfp_ln.py']
model = dict(
    backbone=dict(out_indices=(1, )),
    neck=dict(in_channels=48, scale_factors=(2, 1, 0.5)))
