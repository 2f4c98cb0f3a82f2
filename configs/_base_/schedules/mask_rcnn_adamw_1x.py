# Paper 4.3 (settings otherwise Swin's): AdamW lr 1e-4, weight decay 0.05, 12 epochs, lr x0.1 at
# the 9th and 11th epochs, total batch 16 (2 images x 8 GPUs), fp16 AMP with dynamic loss
# scaling (mmcv's CUDA RoIAlign has no bf16 kernel).
# Milestones use the convention of Swin's "decay at 8 and 11" = mmdet's milestones=[8, 11]:
# the paper's "9th and 11th" are milestones=[9, 11] (mmdet's own 1x is [8, 11]).
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[9, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='float16',
    loss_scale='dynamic',
    # the paramwise_cfg's groups merged by options: 3 groups instead of one per parameter
    constructor='MergedGroupsOptimWrapperConstructor',
    # fused: torch's one-kernel AdamW. The default (foreach) reads every parameter's step count
    # on the host, 2 x 394 reads a step that a host-bound detection step waits on (the same
    # update up to float rounding: tests/test_optim.py)
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05, fused=True),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.alpha': dict(decay_mult=0.0), '.w_ctx': dict(decay_mult=0.0),
                     '.w_loc': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)
