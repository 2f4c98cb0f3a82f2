"""ViTDet-style simple feature pyramid: every level is built from the backbone's last map.

The paper (§4.3) follows ViTDet: the detector sees only the last feature map (stride 32 for
VMINet) and makes the other scales with deconvolutions / pooling. The upsampling levels share
one cascade of 2x2 stride-2 deconvolutions (C -> C/2 -> C/4 -> C/8, norm + GELU between), each
level tapping it at its scale s (relative to the input map):

    s = 2: deconv                         (C/2)     s = 1: identity (C)
    s = 4: deconv -> norm/GELU -> deconv  (C/4)     s = 0.5: 2x2 max-pool (C)
    s = 8: ... -> deconv                  (C/8)
    then, per level, conv1x1 (-> out_channels) + norm, conv3x3 + norm     (as ViTDet)

ViTDet gives each level its own deconvolutions; with a stride-32 input that needs 3+2+1 of them,
the cascade 3. Sharing them saves 0.7 M parameters for C = 384 (2.6 M for C = 768) and keeps
Mask R-CNN's size within 5% of the paper's Table 5 for XS, S and B (README, "Results").

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
    """LayerNorm over the channels of a (B, C, H, W) map, at every position.

    Returns a contiguous (B, C, H, W) tensor. The normalised (B, H, W, C) tensor permuted back
    has channels-last memory, and mmcv's RoIAlign (CPU and CUDA) indexes its input's memory as
    NCHW whatever the strides: fed such a map, every RoI feature is read from the wrong places
    (and its gradient written to others), and Mask R-CNN's RoI heads learn nothing.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2).contiguous()


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
    tuple of ``num_outs`` contiguous maps (B, out_channels, H*s, W*s).
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

        steps = {8: 3, 4: 2, 2: 1, 1: 0, 0.5: 0}
        unsupported = [f for f in self.scale_factors if f not in steps]
        if unsupported:
            raise ValueError(f'unsupported scale factor {unsupported[0]}; use 8, 4, 2, 1 or 0.5')
        # the deconvolution cascade: upsample[i] takes C / 2**i channels to C / 2**(i + 1)
        self.upsample = nn.ModuleList()
        for i in range(max(steps[f] for f in self.scale_factors)):
            width = in_channels // 2**i
            norm_act = [make_norm(norm_cfg, width), nn.GELU()] if i > 0 else []
            self.upsample.append(nn.Sequential(
                *norm_act, nn.ConvTranspose2d(width, width // 2, 2, stride=2)))
        self.levels = nn.ModuleList()
        for scale in self.scale_factors:
            width = in_channels // 2**steps[scale]
            self.levels.append(nn.Sequential(
                nn.MaxPool2d(2, 2) if scale == 0.5 else nn.Identity(),
                nn.Conv2d(width, out_channels, 1, bias=False),
                make_norm(norm_cfg, out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
                make_norm(norm_cfg, out_channels)))
        self.level_steps = [steps[f] for f in self.scale_factors]

    def forward(self, inputs) -> Tuple[torch.Tensor, ...]:
        x = inputs[-1] if isinstance(inputs, (tuple, list)) else inputs
        upsampled = [x]  # upsampled[i]: x after i deconvolutions
        for deconv in self.upsample:
            upsampled.append(deconv(upsampled[-1]))
        # contiguous NCHW whatever the input's memory format (a channels-last model's convs keep
        # it): mmcv's RoIAlign reads raw NCHW memory (LayerNorm2d)
        outs = [level(upsampled[i]).contiguous()
                for level, i in zip(self.levels, self.level_steps)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
