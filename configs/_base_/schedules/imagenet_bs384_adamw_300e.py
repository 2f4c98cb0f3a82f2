# Paper 4.1: AdamW (betas 0.9/0.999), weight decay 0.025, lr 5e-4 at total batch 384, cosine,
# 300 epochs. The warm-up (5 epochs, linear) is Vim's/DeiT's, which the paper says it follows.
optim_wrapper = dict(
    # the paramwise_cfg's groups merged by options instead of one group per parameter
    constructor='MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.025, eps=1e-8),
    # no weight decay on norms, biases and VMI-SA's token weights / mixing scalars
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.alpha': dict(decay_mult=0.0), '.w_ctx': dict(decay_mult=0.0),
                     '.w_loc': dict(decay_mult=0.0)}))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=295, eta_min=1e-5, by_epoch=True, begin=5, end=300),
]

train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# lr 5e-4 is for a total batch of 384; `--auto-scale-lr` rescales it for other totals
auto_scale_lr = dict(base_batch_size=384)
