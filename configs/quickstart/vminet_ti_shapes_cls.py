# Quickstart step 1: pretrain VMINet-Ti as a classifier on the bundled shapes images
# (tools/data/make_shapes_dataset.py), sized to finish in minutes on 2 CPU cores: images are
# classified at 64x64; the detector and segmentor then run at 128x128, which VMI-SA's token
# weights follow by the alpha-grid resizing.
_base_ = ['../_base_/models/vminet_cls.py', 'mmpretrain::_base_/default_runtime.py']

classes = ('circle', 'ring', 'square', 'star', 'triangle')  # sorted, as CustomDataset numbers folders
data_root = 'data/shapes/cls'
model = dict(
    backbone=dict(arch='ti', drop_path_rate=0.05),
    head=dict(num_classes=len(classes), in_channels=192),
    train_cfg=None)  # no mixup: a few thousand small images
data_preprocessor = dict(num_classes=len(classes), mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    # shapes keep their class under flips (no crops: a cut-off star is no longer a star)
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32, num_workers=2, persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train',
                 classes=classes, pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=50, num_workers=2, persistent_workers=True,
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val',
                 classes=classes, pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 8
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=75),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-5, by_epoch=True, begin=0,
         end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=2)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(type='LoggerHook', interval=20),
                     checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=2))
randomness = dict(seed=0)
