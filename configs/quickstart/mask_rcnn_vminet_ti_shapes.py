# Quickstart step 2: Mask R-CNN with VMINet-Ti fine-tuned from the step-1 classifier, through
# the same Pretrained(prefix='backbone.') path as ImageNet weights. The heads are slimmed
# (128-channel pyramid, 256-d box head, 2-conv 64-channel mask head) and the anchors halved for
# 128x128 images, so that it trains in minutes on 2 CPU cores.
# Unlike the paper recipe (ViTDet's simple pyramid on the last map), the four stage maps go to a
# standard FPN: at 128x128 the stride-32 map is 4x4, and the simple pyramid on it reached bbox
# mAP 0.182 in this schedule against the FPN's 0.456 (ablations/det_paper_neck.py,
# docs/quickstart.md).
_base_ = [
    '../_base_/models/mask_rcnn_vminet_sfp.py',
    '../_base_/default_runtime_det.py',
]
# the bundled classes (sorted, as the generator numbers them) and step 1's published checkpoint
classes = ('circle', 'ring', 'square', 'star', 'triangle')
pretrained = 'checkpoints/quickstart/vminet_ti_shapes_cls.pth'
data_root = 'data/shapes/det'
metainfo = dict(classes=classes)
num_classes = 5
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(arch='ti', out_indices=(0, 1, 2, 3), drop_path_rate=0.0,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(_delete_=True, type='mmdet.FPN', in_channels=[24, 48, 96, 192], out_channels=128,
              num_outs=5),
    rpn_head=dict(in_channels=128, feat_channels=128,
                  anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=128),
        bbox_head=dict(in_channels=128, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(num_convs=2, in_channels=128, conv_out_channels=64,
                       num_classes=num_classes)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=300), rcnn=dict(max_per_img=20)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),  # sets scale_factor for the mask head
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + '/annotations/instances_val.json',
                     metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

# 3 epochs of the 1200 bundled scenes: the images seen of 12 epochs of 300 scenes, which gave
# a lower mAP (docs/quickstart.md)
max_epochs = 3
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[2], gamma=0.1),
]
default_hooks = dict(logger=dict(type='LoggerHook', interval=10),
                     checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
randomness = dict(seed=0)
