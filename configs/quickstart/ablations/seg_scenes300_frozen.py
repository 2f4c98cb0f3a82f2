# Seg ablation (docs/quickstart.md): 300 training scenes and a frozen backbone.
_base_ = ['./seg_scenes300.py']
model = dict(backbone=dict(frozen_stages=4))
