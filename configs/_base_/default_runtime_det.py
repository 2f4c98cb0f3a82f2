_base_ = ['mmdet::_base_/default_runtime.py']
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3))
