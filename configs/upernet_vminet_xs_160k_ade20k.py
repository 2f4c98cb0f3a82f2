# UperNet 160k on ADE20K with VMINet-XS (paper Table 6), ImageNet-pretrained backbone.
_base_ = [
    './_base_/models/upernet_vminet_sfp.py',
    './_base_/datasets/ade20k.py',
    './_base_/schedules/upernet_adamw_160k.py',
    './_base_/default_runtime_seg.py',
]
model = dict(
    backbone=dict(
        arch='xs',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/vminet_xs_in1k.pth')),
    neck=dict(in_channels=384))
