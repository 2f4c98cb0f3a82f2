# Quickstart step 3: UperNet with VMINet-Ti fine-tuned from the step-1 classifier (same
# Pretrained(prefix='backbone.') path as ImageNet weights) on the bundled ADE-style label maps,
# slimmed (64-channel pyramid and heads, plain BN) for 2 CPU cores.
_base_ = [
    '../_base_/models/upernet_vminet_sfp.py',
    '../_base_/default_runtime_seg.py',
]
# the bundled classes (sorted, as the generator numbers them) and step 1's published checkpoint
classes = ('circle', 'ring', 'square', 'star', 'triangle')
pretrained = 'checkpoints/quickstart/vminet_ti_shapes_cls.pth'
data_root = 'data/shapes/seg'
crop_size = (128, 128)
seg_classes = ('background', ) + classes
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='ti', drop_path_rate=0.0, norm_cfg=norm_cfg,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=192, out_channels=64),
    decode_head=dict(in_channels=[64, 64, 64, 64], channels=64, pool_scales=(1, 2, 3),
                     num_classes=len(seg_classes), norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=64, channels=32, num_classes=len(seg_classes),
                        norm_cfg=norm_cfg))

dataset = dict(type='BaseSegDataset', data_root=data_root,
               metainfo=dict(classes=seg_classes), img_suffix='.jpg', seg_map_suffix='.png',
               reduce_zero_label=False)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=2, persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                                     max_keep_ckpts=2))
randomness = dict(seed=0)
