# Quickstart step 3: UperNet with VMINet-Ti fine-tuned from the step-1 classifier (same
# Pretrained(prefix='backbone.') path as ImageNet weights) on the bundled ADE-style label maps,
# slimmed (64-channel heads, plain BN) for 2 CPU cores.
# Unlike the paper recipe (one stride-32 map through the simple feature pyramid), UperNet takes
# the four stage maps (strides 4-32) directly: at 128x128 the stride-32 map is 4x4, and from it
# the pyramid reached mIoU 38.2% in this schedule against the four maps' 53.1%
# (ablations/seg_paper_neck.py, docs/quickstart.md).
_base_ = [
    '../_base_/models/upernet_vminet_sfp.py',
    '../_base_/default_runtime_seg.py',
]
# the bundled classes (sorted, as the generator numbers them) and step 1's published checkpoint
classes = ('circle', 'ring', 'square', 'star', 'triangle')
pretrained = 'checkpoints/quickstart/vminet_ti_shapes_cls.pth'
data_root = 'data/shapes/seg'
seg_classes = ('background', ) + classes
norm_cfg = dict(type='BN', requires_grad=True)
# background is ~90% of the pixels: weighted down so that the shape classes are learnt sooner
class_weight = [0.2] + [1.0] * len(classes)
model = dict(
    # pad to a multiple of 32, not to a fixed size: mmseg 1.2.2's CrossEntropyLoss with class_weight
    # indexes the weights with every label, so a padded (255) pixel raises IndexError; the bundled
    # images are all 128x128 and are never padded (other sizes: keep each batch one size)
    data_preprocessor=dict(size=None, size_divisor=32),
    # norm_eval and a 10x lower backbone lr keep the pretrained features: trained at the heads'
    # lr they were lost and every shape came out as 'circle'
    backbone=dict(arch='ti', out_indices=(0, 1, 2, 3), drop_path_rate=0.0, norm_cfg=norm_cfg,
                  norm_eval=True, init_cfg=dict(checkpoint=pretrained)),
    neck=None,
    decode_head=dict(in_channels=[24, 48, 96, 192], channels=64, pool_scales=(1, 2, 3),
                     num_classes=len(seg_classes), norm_cfg=norm_cfg,
                     loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0,
                                      class_weight=class_weight)),
    auxiliary_head=dict(in_channels=96, channels=32, num_classes=len(seg_classes),
                        norm_cfg=norm_cfg,
                        loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4,
                                         class_weight=class_weight)))

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

max_iters = 3000
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'backbone': dict(lr_mult=0.1)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000,
                                     max_keep_ckpts=2))
randomness = dict(seed=0)
