_base_ = ['mmdet::_base_/default_runtime.py']
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
# mask targets on the device: mmdet's values without its host round trips (mmvminet/det_targets.py)
custom_hooks = [dict(type='FastDetTrainHook')]
