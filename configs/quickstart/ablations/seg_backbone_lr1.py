# Seg ablation (docs/quickstart.md): the backbone at the heads' lr (BN statistics still frozen).
_base_ = ['../upernet_vminet_ti_shapes.py']
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
