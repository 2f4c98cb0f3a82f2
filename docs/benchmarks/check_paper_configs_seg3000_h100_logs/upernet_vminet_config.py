crop_size = (
    512,
    512,
)
custom_hooks = [
    dict(type='FastDecodeHeadLossHook'),
    dict(type='RNGStateHook'),
    dict(type='StopOnNonFiniteLossHook'),
    dict(type='CheckDatasetsHook'),
    dict(type='AmpOverflowHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'mmvminet',
    ])
data_preprocessor = dict(
    _scope_='mmseg',
    bgr_to_rgb=True,
    mean=[
        123.675,
        116.28,
        103.53,
    ],
    pad_val=0,
    seg_pad_val=255,
    std=[
        58.395,
        57.12,
        57.375,
    ],
    type='SegDataPreProcessor')
data_root = 'data/ade/ADEChallengeData2016'
dataset_type = 'ADE20KDataset'
default_hooks = dict(
    checkpoint=dict(
        by_epoch=False, interval=100, max_keep_ckpts=1, type='CheckpointHook'),
    logger=dict(interval=50, log_metric_by_epoch=False, type='LoggerHook'),
    param_scheduler=dict(_scope_='mmseg', type='ParamSchedulerHook'),
    sampler_seed=dict(_scope_='mmseg', type='DistSamplerSeedHook'),
    timer=dict(_scope_='mmseg', type='IterTimerHook'),
    visualization=dict(_scope_='mmseg', type='SegVisualizationHook'))
default_scope = 'mmseg'
env_cfg = dict(
    cudnn_benchmark=True,
    dist_cfg=dict(backend='nccl'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
img_ratios = [
    0.5,
    0.75,
    1.0,
    1.25,
    1.5,
    1.75,
]
launcher = 'none'
load_from = '/work/main/work_dirs/check_paper_configs/upernet_vminet/iter_3000.pth'
log_level = 'INFO'
log_processor = dict(by_epoch=False)
model = dict(
    _scope_='mmseg',
    auxiliary_head=dict(
        align_corners=False,
        channels=256,
        concat_input=False,
        dropout_ratio=0.1,
        in_channels=256,
        in_index=2,
        loss_decode=dict(
            loss_weight=0.4, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='SyncBN'),
        num_classes=6,
        num_convs=1,
        type='FCNHead'),
    backbone=dict(
        arch='s',
        drop_path_rate=0.1,
        init_cfg=None,
        norm_cfg=dict(requires_grad=True, type='SyncBN'),
        out_indices=(3, ),
        type='VMINet'),
    data_preprocessor=dict(
        bgr_to_rgb=True,
        mean=[
            123.675,
            116.28,
            103.53,
        ],
        pad_val=0,
        seg_pad_val=255,
        size=(
            512,
            512,
        ),
        std=[
            58.395,
            57.12,
            57.375,
        ],
        type='SegDataPreProcessor'),
    decode_head=dict(
        align_corners=False,
        channels=448,
        dropout_ratio=0.1,
        in_channels=[
            256,
            256,
            256,
            256,
        ],
        in_index=[
            0,
            1,
            2,
            3,
        ],
        loss_decode=dict(
            loss_weight=1.0, type='CrossEntropyLoss', use_sigmoid=False),
        norm_cfg=dict(requires_grad=True, type='SyncBN'),
        num_classes=6,
        pool_scales=(
            1,
            2,
            3,
            6,
        ),
        type='UPerHead'),
    neck=dict(
        in_channels=384,
        norm_cfg=dict(eps=1e-06, type='LayerNorm2d'),
        num_outs=4,
        out_channels=256,
        scale_factors=(
            8,
            4,
            2,
            1,
        ),
        type='SimpleFeaturePyramid'),
    pretrained=None,
    test_cfg=dict(mode='whole'),
    train_cfg=dict(),
    type='EncoderDecoder')
norm_cfg = dict(_scope_='mmseg', requires_grad=True, type='SyncBN')
optim_wrapper = dict(
    constructor='MergedGroupsOptimWrapperConstructor',
    dtype='float16',
    loss_scale='dynamic',
    optimizer=dict(
        betas=(
            0.9,
            0.999,
        ), lr=0.0002, type='AdamW', weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys=dict({
            '.alpha': dict(decay_mult=0.0),
            '.w_ctx': dict(decay_mult=0.0),
            '.w_loc': dict(decay_mult=0.0)
        }),
        norm_decay_mult=0.0),
    type='AmpOptimWrapper')
optimizer = dict(
    _scope_='mmseg', lr=0.01, momentum=0.9, type='SGD', weight_decay=0.0005)
param_scheduler = [
    dict(
        begin=0, by_epoch=False, end=100, start_factor=0.001, type='LinearLR'),
    dict(
        begin=0,
        by_epoch=False,
        end=3000,
        gamma=0.1,
        milestones=[
            2250,
            2700,
        ],
        type='MultiStepLR'),
]
randomness = dict(seed=0)
resume = True
sync_bn = 'torch'
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=1,
    dataset=dict(
        _scope_='mmseg',
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        data_root='data/shapes_coco/seg',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'background',
                'circle',
                'ring',
                'square',
                'star',
                'triangle',
            ),
            palette=[
                [
                    0,
                    0,
                    0,
                ],
                [
                    230,
                    25,
                    75,
                ],
                [
                    60,
                    180,
                    75,
                ],
                [
                    255,
                    225,
                    25,
                ],
                [
                    0,
                    130,
                    200,
                ],
                [
                    245,
                    130,
                    48,
                ],
            ]),
        pipeline=[
            dict(skip_bad=False, type='CheckedLoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                2048,
                512,
            ), type='Resize'),
            dict(reduce_zero_label=False, type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=False,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(_scope_='mmseg', shuffle=False, type='DefaultSampler'))
test_evaluator = dict(
    _scope_='mmseg', iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
test_pipeline = [
    dict(_scope_='mmseg', type='LoadImageFromFile'),
    dict(_scope_='mmseg', keep_ratio=True, scale=(
        2048,
        512,
    ), type='Resize'),
    dict(_scope_='mmseg', reduce_zero_label=True, type='LoadAnnotations'),
    dict(_scope_='mmseg', type='PackSegInputs'),
]
train_cfg = dict(max_iters=3000, type='IterBasedTrainLoop', val_interval=3000)
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        _scope_='mmseg',
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'),
        data_root='data/shapes_coco/seg',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'background',
                'circle',
                'ring',
                'square',
                'star',
                'triangle',
            ),
            palette=[
                [
                    0,
                    0,
                    0,
                ],
                [
                    230,
                    25,
                    75,
                ],
                [
                    60,
                    180,
                    75,
                ],
                [
                    255,
                    225,
                    25,
                ],
                [
                    0,
                    130,
                    200,
                ],
                [
                    245,
                    130,
                    48,
                ],
            ]),
        pipeline=[
            dict(skip_bad=False, type='CheckedLoadImageFromFile'),
            dict(reduce_zero_label=False, type='LoadAnnotations'),
            dict(
                keep_ratio=True,
                ratio_range=(
                    0.5,
                    2.0,
                ),
                scale=(
                    2048,
                    512,
                ),
                type='RandomResize'),
            dict(
                cat_max_ratio=0.75, crop_size=(
                    512,
                    512,
                ), type='RandomCrop'),
            dict(prob=0.5, type='RandomFlip'),
            dict(type='PhotoMetricDistortion'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=False,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(_scope_='mmseg', shuffle=True, type='InfiniteSampler'))
train_pipeline = [
    dict(_scope_='mmseg', type='LoadImageFromFile'),
    dict(_scope_='mmseg', reduce_zero_label=True, type='LoadAnnotations'),
    dict(
        _scope_='mmseg',
        keep_ratio=True,
        ratio_range=(
            0.5,
            2.0,
        ),
        scale=(
            2048,
            512,
        ),
        type='RandomResize'),
    dict(
        _scope_='mmseg',
        cat_max_ratio=0.75,
        crop_size=(
            512,
            512,
        ),
        type='RandomCrop'),
    dict(_scope_='mmseg', prob=0.5, type='RandomFlip'),
    dict(_scope_='mmseg', type='PhotoMetricDistortion'),
    dict(_scope_='mmseg', type='PackSegInputs'),
]
tta_model = dict(_scope_='mmseg', type='SegTTAModel')
tta_pipeline = [
    dict(_scope_='mmseg', backend_args=None, type='LoadImageFromFile'),
    dict(
        _scope_='mmseg',
        transforms=[
            [
                dict(keep_ratio=True, scale_factor=0.5, type='Resize'),
                dict(keep_ratio=True, scale_factor=0.75, type='Resize'),
                dict(keep_ratio=True, scale_factor=1.0, type='Resize'),
                dict(keep_ratio=True, scale_factor=1.25, type='Resize'),
                dict(keep_ratio=True, scale_factor=1.5, type='Resize'),
                dict(keep_ratio=True, scale_factor=1.75, type='Resize'),
            ],
            [
                dict(direction='horizontal', prob=0.0, type='RandomFlip'),
                dict(direction='horizontal', prob=1.0, type='RandomFlip'),
            ],
            [
                dict(type='LoadAnnotations'),
            ],
            [
                dict(type='PackSegInputs'),
            ],
        ],
        type='TestTimeAug'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=1,
    dataset=dict(
        _scope_='mmseg',
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        data_root='data/shapes_coco/seg',
        img_suffix='.jpg',
        metainfo=dict(
            classes=(
                'background',
                'circle',
                'ring',
                'square',
                'star',
                'triangle',
            ),
            palette=[
                [
                    0,
                    0,
                    0,
                ],
                [
                    230,
                    25,
                    75,
                ],
                [
                    60,
                    180,
                    75,
                ],
                [
                    255,
                    225,
                    25,
                ],
                [
                    0,
                    130,
                    200,
                ],
                [
                    245,
                    130,
                    48,
                ],
            ]),
        pipeline=[
            dict(skip_bad=False, type='CheckedLoadImageFromFile'),
            dict(keep_ratio=True, scale=(
                2048,
                512,
            ), type='Resize'),
            dict(reduce_zero_label=False, type='LoadAnnotations'),
            dict(type='PackSegInputs'),
        ],
        reduce_zero_label=False,
        seg_map_suffix='.png',
        type='BaseSegDataset'),
    num_workers=2,
    persistent_workers=True,
    sampler=dict(_scope_='mmseg', shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    _scope_='mmseg', iou_metrics=[
        'mIoU',
    ], type='IoUMetric')
vis_backends = [
    dict(_scope_='mmseg', type='LocalVisBackend'),
]
visualizer = dict(
    _scope_='mmseg',
    name='visualizer',
    type='SegLocalVisualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
    ])
work_dir = 'work_dirs/check_paper_configs/upernet_vminet'
