# VMINet-TI on ImageNet-1K, the paper's recipe (section 4.1, Table 1/2).
_base_ = [
    './_base_/models/vminet_cls.py',
    './_base_/datasets/imagenet_bs128_vminet_224.py',
    './_base_/schedules/imagenet_bs384_adamw_300e.py',
    'mmpretrain::_base_/default_runtime.py',
]
model = dict(backbone=dict(arch='ti', drop_path_rate=0.0), head=dict(in_channels=192))
