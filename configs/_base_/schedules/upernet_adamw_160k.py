# Paper 4.4 (Vim's recipe): AdamW lr 6e-5, weight decay 0.01, linear warm-up over 1500 iters,
# then linear decay (poly, power 1) to 0 at 160k iters; total batch 16 (2 x 8 GPUs).
_base_ = ['mmseg::_base_/schedules/schedule_160k.py']
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # the paramwise_cfg's groups merged by options instead of one group per parameter
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        custom_keys={'.alpha': dict(decay_mult=0.0), '.w_ctx': dict(decay_mult=0.0),
                     '.w_loc': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
# SyncBN across GPUs for every BatchNorm under DDP (mmengine converts at wrap time)
sync_bn = 'torch'
