# Neck ablation (docs/quickstart.md): the simple pyramid with GroupNorm (8 groups).
_base_ = ['./det_sfp_ln.py']
model = dict(neck=dict(norm_cfg=dict(type='GN', num_groups=8)))
