# Mask R-CNN on VMINet, ViTDet style (paper 4.3): only the backbone's last map (stride 32) goes
# to a simple feature pyramid that makes strides 4-64. RPN/RoI heads are mmdet's Mask R-CNN.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['mmvminet'], allow_failed_imports=False)

norm_cfg = dict(type='LayerNorm2d', eps=1e-6)
model = dict(
    backbone=dict(
        _delete_=True,
        type='VMINet',
        arch='xs',
        out_indices=(3, ),
        drop_path_rate=0.1,
        norm_eval=True,  # 2 images per GPU: keep the ImageNet BN statistics
        init_cfg=dict(type='Pretrained', checkpoint='checkpoints/vminet_xs_in1k.pth',
                      prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='SimpleFeaturePyramid',
        in_channels=384,
        out_channels=256,
        scale_factors=(8, 4, 2, 1),
        num_outs=5,
        norm_cfg=norm_cfg))
