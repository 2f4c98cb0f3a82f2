# Neck ablation (docs/quickstart.md): the simple pyramid with BatchNorm instead of LayerNorm.
_base_ = ['./det_sfp_ln.py']
model = dict(neck=dict(norm_cfg=dict(type='BN')))
