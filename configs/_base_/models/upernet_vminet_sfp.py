# UperNet on VMINet (paper 4.4, following Vim): the simple feature pyramid turns the last map
# into strides 4-32 for UperNet's four inputs. SyncBN in the heads and the backbone, as the
# recipe trains 2 images on each of 8 GPUs; mmengine turns SyncBN into BN on one device.
_base_ = ['mmseg::_base_/models/upernet_r50.py']
custom_imports = dict(imports=['mmvminet'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=(512, 512)),  # the dataset's crop_size
    backbone=dict(
        _delete_=True,
        type='VMINet',
        arch='xs',
        out_indices=(3, ),
        drop_path_rate=0.1,
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vminet_xs_in1k.pth',
                      prefix='backbone.')),
    neck=dict(
        type='SimpleFeaturePyramid',
        in_channels=384,
        out_channels=256,
        scale_factors=(8, 4, 2, 1),
        num_outs=4,
        norm_cfg=dict(type='LayerNorm2d', eps=1e-6)),
    decode_head=dict(in_channels=[256, 256, 256, 256], channels=448, num_classes=150,
                     norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=256, in_index=2, channels=256, num_classes=150,
                        norm_cfg=norm_cfg))
