"""ViTDet-style simple feature pyramid: every level is built from the backbone's last map.

The paper (§4.3) follows ViTDet: the detector sees only the last feature map (stride 32 for
VMINet) and makes the other scales with deconvolutions / pooling. Per level, with C the input
width and s the scale factor relative to that map:

    s = 8: deconv2x2 -> norm -> GELU -> deconv2x2 -> norm -> GELU -> deconv2x2   (C -> C/8)
    s = 4: deconv2x2 -> norm -> GELU -> deconv2x2                                  (C -> C/4)
    s = 2: deconv2x2                                                               (C -> C/2)
    s = 1: identity;  s = 0.5: 2x2 max-pool
    then conv1x1 (-> out_channels) + norm, conv3x3 + norm                          (ViTDet)

Levels beyond ``len(scale_factors)`` (``num_outs``) are stride-2 max-pools of the last level, as
the RPN of Mask R-CNN wants a stride-64 map. Norm: ``LayerNorm2d`` by default (ViTDet uses a
channel LayerNorm; it is batch-size independent, which matters at 2 images per GPU);
any mmcv norm (``BN``, ``SyncBN``, ``GN``) can be given instead.
"""
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule

from ..registry import register_model


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, at every position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


def make_norm(norm_cfg: dict, channels: int) -> nn.Module:
    """``LayerNorm2d`` (named here, so it needs no registry scope) or any mmcv norm."""
    if norm_cfg['type'] == 'LayerNorm2d':
        return LayerNorm2d(channels, **{k: v for k, v in norm_cfg.items() if k != 'type'})
    return build_norm_layer(norm_cfg, channels)[1]


@register_model
class SimpleFeaturePyramid(BaseModule):
    """Multi-scale maps from one backbone map (mmdet and mmseg registries).

    Args:
        in_channels: width of the backbone's last map (an int, or a sequence whose last entry
            is used, so ``backbone.out_channels`` can be passed as is).
        out_channels: width of every output level.
        scale_factors: upsampling factor of each level w.r.t. the input map; (8, 4, 2, 1) turns
            a stride-32 map into strides 4, 8, 16, 32.
        num_outs: number of outputs; extra levels are stride-2 max-pools of the last one.
        norm_cfg: norm of the deconv chain and the output convs.

    Forward: a tuple of backbone maps (only the last is used) or one tensor (B, C, H, W) ->
    tuple of ``num_outs`` maps (B, out_channels, H*s, W*s).
    """

    def __init__(self,
                 in_channels,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (8, 4, 2, 1),
                 num_outs: int = 5,
                 norm_cfg: dict = dict(type='LayerNorm2d', eps=1e-6),
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int):
            in_channels = list(in_channels)[-1]
        if num_outs < len(scale_factors):
            raise ValueError(f'num_outs ({num_outs}) < number of scale factors '
                             f'({len(scale_factors)})')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = tuple(scale_factors)
        self.num_outs = num_outs

        self.levels = nn.ModuleList()
        for scale in self.scale_factors:
            resample, width = self._resampler(scale, in_channels, norm_cfg)
            self.levels.append(nn.Sequential(
                resample,
                nn.Conv2d(width, out_channels, 1, bias=False),
                make_norm(norm_cfg, out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                make_norm(norm_cfg, out_channels)))

    @staticmethod
    def _resampler(scale: float, channels: int, norm_cfg: dict) -> Tuple[nn.Module, int]:
        """The resampling head of one level and its output width."""
        if scale == 1:
            return nn.Identity(), channels
        if scale == 0.5:
            return nn.MaxPool2d(2, 2), channels
        steps = {2: 1, 4: 2, 8: 3}.get(scale)
        if steps is None:
            raise ValueError(f'unsupported scale factor {scale}; use 8, 4, 2, 1 or 0.5')
        layers = []
        for i in range(steps):
            if i > 0:
                layers += [make_norm(norm_cfg, channels), nn.GELU()]
            layers.append(nn.ConvTranspose2d(channels, channels // 2, 2, stride=2))
            channels //= 2
        return nn.Sequential(*layers), channels

    def forward(self, inputs) -> Tuple[torch.Tensor, ...]:
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        outs = [level(x) for level in self.levels]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
