# Seg ablation (docs/quickstart.md): the quickstart UperNet with the whole pretrained backbone
# frozen (stem and four stages); only the heads learn.
_base_ = ['../upernet_vminet_ti_shapes.py']
model = dict(backbone=dict(frozen_stages=4))
