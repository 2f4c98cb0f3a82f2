_base_ = ['mmseg::_base_/default_runtime.py']
# the decode heads' loss with mmvminet.seg_loss: a fast backward for upsampling the logits to the
# label size, top-1 accuracy by argmax (same values)
custom_hooks = [dict(type='FastDecodeHeadLossHook')]
