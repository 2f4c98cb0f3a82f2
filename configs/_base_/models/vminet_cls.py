# VMINet ImageNet classifier: backbone -> global average pool -> Linear (the authors' head is
# BatchNorm -> GAP -> Linear; the BatchNorm is the backbone's `norm`, applied to the last map).
custom_imports = dict(imports=['mmvminet'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='VMINet', arch='xs', out_indices=(3, ), drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=384,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02)),
    # mixup (paper 4.1); DeiT/Vim's alpha 0.8
    train_cfg=dict(augments=dict(type='Mixup', alpha=0.8)))
