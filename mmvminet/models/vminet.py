"""VMINet: a hierarchical backbone of downsampling convs and VMI-SA blocks.

Paper: "A Separable Self-attention Inspired by the State Space Model for Computer Vision"
(Zhang et al.), equation numbers below refer to it. The default network is the one the authors
released as VMINet 2.0 (``shared/spec/vminet-architecture.md``):

    stem (3x3 s2 conv + BN + ReLU6) -> 4 x [downsample (3x3 s2 conv + BN) -> VMI-SA blocks]

VMI-SA on x (B, C, H, W), L = H*W tokens in raster order, D = ratio*C channels:
    u = BN(DWConv7x7(x)); Q = ReLU6(W1 u); K = W2 u; A = Q * K                      (Eq. 4)
    matrix form:    c = sum_t alpha_t * (M * A)_t;  Y = w_ctx * Expand_L(c) + w_loc * A (Eq. 10)
    recurrent form: h_t = h_{t-1} + alpha_t A_t;    Y_t = w_ctx * M_t * h_t + w_loc * A_t (Eq. 9)
    out = x + DropPath(W3 ReLU6(Y))

The file holds, in order: masks, alpha-grid resizing, the block, the stage, the backbone, the
variant table and the mapping from the authors' checkpoint keys.
"""
import re
import warnings
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from ..registry import register_model
from . import vmisa_triton

# ----------------------------------------------------------------------------------------------
# Masks (Eq. 8, 12, 13 and Table 4). Each is an (L, D) 0/1 matrix: row t = token, column n = channel.
# ----------------------------------------------------------------------------------------------
MASK_KINDS = ('lower_triangular', 'banded', 'block_diagonal', 'none', 'hybrid')
FORMS = ('matrix', 'recurrent')


def build_mask(kind: str, num_tokens: int, channels: int, device=None, dtype=torch.float32):
    """The (num_tokens, channels) mask M of one VMI-SA block.

    - ``lower_triangular`` (Eq. 8, VMINet 2.0): M[t, n] = 1 iff n <= t, so channel n only receives
      tokens t >= n (Eq. 11); when D > L the channels n >= L receive nothing.
    - ``banded`` (Eq. 12): M[t, n] = 1 iff |t - n| <= B // 2, with B = min(L, D) (bandwidth B/2).
    - ``block_diagonal`` (Eq. 13): B/2 blocks of 2x2 on the diagonal of the leading B x B square.
    - ``none``: all ones (the Table 4 baseline).
    """
    t = torch.arange(num_tokens, device=device)[:, None]
    n = torch.arange(channels, device=device)[None, :]
    if torch.is_tensor(num_tokens):
        # a traced size (ONNX export): Python's min() would freeze the branch the example
        # input took into the graph, wrong at other input sizes; torch.clamp stays an op
        b = torch.clamp(num_tokens, max=channels)
    else:
        b = min(num_tokens, channels)
    if kind == 'lower_triangular':
        mask = n <= t
    elif kind == 'banded':
        mask = (t - n).abs() <= b // 2
    elif kind == 'block_diagonal':
        mask = (t // 2 == n // 2) & (t < b - b % 2) & (n < b - b % 2)
    elif kind == 'none':
        mask = torch.ones(num_tokens, channels, dtype=torch.bool, device=device)
    else:
        raise ValueError(f'unknown mask kind {kind!r}; valid kinds: '
                         f'{", ".join(k for k in MASK_KINDS if k != "hybrid")}')
    return mask.to(dtype)


def block_mask_kinds(mask_kind: str, depths: Sequence[int]):
    """Per-stage lists of per-block mask kinds; ``hybrid`` is Table 4's best schedule:
    stages 1-2 banded, stages 3-4 alternating lower-triangular and banded."""
    if mask_kind not in MASK_KINDS:
        raise ValueError(f'unknown mask_kind {mask_kind!r}; valid: {", ".join(MASK_KINDS)}')
    kinds = []
    for stage, depth in enumerate(depths):
        if mask_kind != 'hybrid':
            kinds.append([mask_kind] * depth)
        elif stage < 2:
            kinds.append(['banded'] * depth)
        else:
            kinds.append(['lower_triangular' if j % 2 == 0 else 'banded' for j in range(depth)])
    return kinds


def resize_alpha(alpha: torch.Tensor, grid: Tuple[int, int], size: Tuple[int, int]):
    """Token weights alpha (grid_h * grid_w,) learnt on the 224 grid, for a (H, W) feature map.

    Bilinear resizing (as ViTDet/Swin do for position tables), then scaled by the area ratio
    grid_h * grid_w / (H * W) so that sum_t alpha_t, hence the context vector's magnitude, stays
    what it was at 224 (exactly for a constant grid, up to bilinear border effects otherwise). We
    do not renormalise by the ratio of sums: signed alphas can sum to ~0 and that ratio explodes.
    At H, W == grid (224 inputs) alpha is returned as it is.
    Returns (H * W,).
    """
    grid_h, grid_w = grid
    h, w = size
    if (h, w) == (grid_h, grid_w):  # the identity: no interpolation kernel per block and call
        return alpha
    resized = F.interpolate(alpha.reshape(1, 1, grid_h, grid_w), size=(h, w), mode='bilinear',
                            align_corners=False)
    return resized.reshape(h * w) * (grid_h * grid_w / (h * w))


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------
def conv_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype F.conv2d runs x in: autocast's where it is on for x's device, else x's (what
    the Triton convs, which do not go through autocast, cast to)."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype


class ConvNorm(nn.Sequential):
    """Conv2d (with bias, as the authors') followed by a norm layer: (B, Cin, H, W) -> (B, Cout, H', W')."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1,
                 norm_cfg=dict(type='BN')):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, groups=groups, bias=True)
        self.norm = build_norm_layer(norm_cfg, out_channels)[1]
        self.use_triton = False

    @torch.no_grad()
    def fuse(self, triton: bool = False):
        """Fold an eval-mode BatchNorm into the conv (inference only): conv' = BN(conv).
        triton=True also runs the folded conv (groups 1) and its bias in one Triton kernel
        (CUDA, under torch.no_grad or inference_mode)."""
        if isinstance(self.norm, _BatchNorm):
            scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
            self.conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
            self.conv.bias.copy_((self.conv.bias - self.norm.running_mean) * scale
                                 + self.norm.bias)
            self.norm = nn.Identity()
        self.use_triton = (triton and self.conv.groups == 1
                           and isinstance(self.norm, nn.Identity))
        if self.use_triton:
            self.register_buffer('conv_table', vmisa_triton.conv_table(self.conv.weight),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_triton and not torch.is_grad_enabled() and vmisa_triton.runs_on(x):
            return vmisa_triton.conv(x.to(conv_dtype(x)), self.conv_table, self.conv.bias,
                                     self.conv.kernel_size[0], self.conv.stride[0])
        return super().forward(x)


class VMISA(nn.Module):
    """Vision-Mamba-Inspired Separable Self-Attention block (one residual unit).

    Args:
        channels: C, input and output width.
        ratio: r, the expansion D = r * C of Q, K and the context vector.
        alpha_grid: (grid_h, grid_w) of the learnt token weights alpha (the stage's 224 grid).
        mask_kind: one of ``build_mask``'s kinds.
        form: ``'matrix'`` (Eq. 10, global context, the trained default) or ``'recurrent'``
            (Eq. 9, each token sees the tokens up to itself; computed in parallel by a cumsum).
        drop_path: stochastic-depth rate of this block.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, ratio: int, alpha_grid: Tuple[int, int],
                 mask_kind: str = 'lower_triangular', form: str = 'matrix',
                 drop_path: float = 0., norm_cfg=dict(type='BN')):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f'unknown form {form!r}; valid: {", ".join(FORMS)}')
        build_mask(mask_kind, 1, 1)  # validates the kind early, with the list of valid ones
        hidden = ratio * channels
        self.mask_kind = mask_kind
        self.form = form
        self.alpha_grid = tuple(alpha_grid)
        self.dwconv = ConvNorm(channels, channels, 7, groups=channels, norm_cfg=norm_cfg)
        self.q_proj = nn.Conv2d(channels, hidden, 1)
        self.k_proj = nn.Conv2d(channels, hidden, 1)
        self.alpha = nn.Parameter(torch.zeros(alpha_grid[0] * alpha_grid[1]))
        # w_ctx scales the context vector, w_loc (the paper's beta) the local term Q*K.
        self.w_ctx = nn.Parameter(torch.ones(()))
        self.w_loc = nn.Parameter(torch.ones(()))
        self.out_proj = nn.Conv2d(hidden, channels, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.qk_proj = None  # set by fuse(): q_proj and k_proj as one C -> 2D conv
        self.use_triton = False  # set by fuse(triton=True)

    @torch.no_grad()
    def fuse(self, triton: bool = False):
        """Inference only: fold the depthwise conv's BN and merge the Q and K projections into
        one 1x1 conv, so the (B, C, H, W) map is read once and one GEMM runs instead of two.
        triton: run the depthwise conv and everything after it in Triton kernels
        (``vmisa_triton``: the fused pair on narrow C, the GEMM pair on C a multiple of 16)
        where they apply (CUDA, no autograd; the kernels after the conv: matrix form). The
        kernels read copies of the weights made here: fuse after loading them. Calling it again
        (say fuse() then fuse(triton=True)) only switches the kernels."""
        self.dwconv.fuse()
        if self.qk_proj is None:
            merged = nn.Conv2d(self.q_proj.in_channels, 2 * self.q_proj.out_channels, 1).to(
                self.q_proj.weight)
            merged.weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight]))
            merged.bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias]))
            self.qk_proj = merged
            del self.q_proj, self.k_proj
        # the Triton depthwise conv has no norm after it: only where the norm was folded (BN)
        self.use_triton = triton and isinstance(self.dwconv.norm, nn.Identity)
        if self.use_triton:
            # the conv's weights as the (K*K, C) fp32 tap table; the projections as one flat
            # buffer, which autocast casts in one kernel instead of four
            self.register_buffer('dwconv_taps', vmisa_triton.tap_weights(self.dwconv.conv.weight),
                                 persistent=False)
            self.register_buffer('projections', self.flat_projections(), persistent=False)
            self.register_buffer('mixing', self.mixing_weights(), persistent=False)

    def flat_projections(self) -> torch.Tensor:
        """qk_proj's and out_proj's weights and biases, flattened and concatenated:
        (2 D C + 2 D + C D + C,). Needs fuse()."""
        return torch.cat([p.reshape(-1) for p in (self.qk_proj.weight, self.qk_proj.bias,
                                                   self.out_proj.weight, self.out_proj.bias)])

    def mixing_weights(self) -> torch.Tensor:
        """(w_ctx, w_loc) as one (2,) fp32 tensor, as the kernels take them."""
        return torch.stack([self.w_ctx, self.w_loc]).float()

    def token_weights(self, size: Tuple[int, int]) -> torch.Tensor:
        """alpha for a (H, W) map: (H * W,)."""
        return resize_alpha(self.alpha, self.alpha_grid, size)

    def context_vector(self, qk: torch.Tensor) -> torch.Tensor:
        """c_v = sum_t alpha_t * M_t * (Q*K)_t (Eq. 10). qk (B, D, H, W) -> (B, D, 1, 1)."""
        b, d, h, w = qk.shape
        alpha = self.token_weights((h, w)).to(qk.dtype)
        if self.mask_kind == 'lower_triangular':
            # M^T[n, t] = 1 iff n <= t: alpha on and above the diagonal, the values of
            # M^T * alpha in two operators instead of the mask's eight (an eager training step
            # of a detector dispatches each one, every block, forward and backward)
            weight = alpha.expand(d, h * w).triu()                          # (D, L)
        else:
            mask = build_mask(self.mask_kind, h * w, d, qk.device, qk.dtype)  # (L, D)
            weight = mask.t() * alpha                                          # (D, L)
        return (qk.flatten(2) * weight).sum(-1).reshape(b, d, 1, 1)

    def recurrent_context(self, qk: torch.Tensor) -> torch.Tensor:
        """M_t * h_t with h_t = sum_{s<=t} alpha_s (Q*K)_s (Eq. 9). qk (B, D, H, W) -> same shape."""
        b, d, h, w = qk.shape
        mask = build_mask(self.mask_kind, h * w, d, qk.device, qk.dtype)  # (L, D)
        hidden = torch.cumsum(qk.flatten(2) * self.token_weights((h, w)).to(qk.dtype), dim=-1)
        return (hidden * mask.t()).reshape(b, d, h, w)

    def fused_forward(self, x: torch.Tensor, u: torch.Tensor, blocks=None) -> torch.Tensor:
        """The matrix form after the depthwise conv u = dwconv(x) in the Triton kernels (forward
        uses them where ``vmisa_triton.available``; benchmarks everywhere they tile).
        Needs fuse(); x, u (B, C, H, W) -> (B, C, H, W). blocks: kernel tiles, for tuning."""
        c, d = self.out_proj.out_channels, self.out_proj.in_channels
        flat = self.projections if self.use_triton else self.flat_projections()
        mixing = self.mixing if self.use_triton else self.mixing_weights()
        qk_weight, qk_bias, out_weight, out_bias = flat.to(u.dtype).split(
            [2 * d * c, 2 * d, c * d, c])
        return vmisa_triton.vmisa_context_output(
            x, u, qk_weight.view(2 * d, c), qk_bias, self.token_weights(x.shape[-2:]), mixing,
            out_weight.view(c, d), out_bias, self.mask_kind, blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernels = self.use_triton and not torch.is_grad_enabled()  # they have no backward
        if kernels and vmisa_triton.runs_on(x):
            u = vmisa_triton.depthwise_conv(x, self.dwconv_taps, self.dwconv.conv.bias)
        else:
            u = self.dwconv(x)
        if kernels and vmisa_triton.available(x, self.mask_kind, self.form,
                                                self.out_proj.in_channels):
            return self.fused_forward(x, u)
        if self.qk_proj is None:
            q, k = self.q_proj(u), self.k_proj(u)
        else:
            q, k = self.qk_proj(u).chunk(2, dim=1)
        qk = F.relu6(q) * k
        if self.form == 'matrix':
            context = self.context_vector(qk)
        else:
            context = self.recurrent_context(qk)
        y = self.w_ctx * context + self.w_loc * qk
        return x + self.drop_path(self.out_proj(F.relu6(y)))


class VMINetStage(nn.Module):
    """A stride-2 ConvNorm downsampler followed by ``depth`` VMI-SA blocks.

    Shapes: (B, Cin, H, W) -> (B, C, ceil(H/2), ceil(W/2)).
    """

    def __init__(self, in_channels, channels, depth, ratio, alpha_grid, mask_kinds, form,
                 drop_paths, norm_cfg=dict(type='BN')):
        super().__init__()
        self.downsample = ConvNorm(in_channels, channels, 3, stride=2, norm_cfg=norm_cfg)
        self.blocks = nn.Sequential(*[
            VMISA(channels, ratio, alpha_grid, mask_kinds[j], form, drop_paths[j], norm_cfg)
            for j in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


# ----------------------------------------------------------------------------------------------
# Backbone
# ----------------------------------------------------------------------------------------------
@register_model
class VMINet(BaseModule):
    """VMINet backbone (mmpretrain, mmdet and mmseg registries).

    Args:
        arch: ``'ti' | 'xs' | 's' | 'b'`` (Table 1) or a dict with ``base_dim``, ``ratio`` and
            optionally ``depths`` (default [2, 2, 18, 2]) and ``stem_channels`` (default 32).
        out_indices: stages whose maps are returned, 0..3 (strides 4, 8, 16, 32).
        mask_kind: ``'lower_triangular'`` (2.0), ``'banded'``, ``'block_diagonal'``, ``'none'``
            or ``'hybrid'`` (Table 4).
        form: ``'matrix'`` (Eq. 10) or ``'recurrent'`` (Eq. 9).
        drop_path_rate: stochastic depth, growing linearly over all blocks to this rate.
        frozen_stages: -1 freezes nothing; k >= 0 freezes the stem and stages 0..k-1.
        norm_eval: keep every BatchNorm in eval mode while training (detection fine-tuning).
        final_norm: apply the authors' head BatchNorm (``norm``) to the last stage's output.
        pretrain_img_size: input size the alpha grids were learnt at (224: grids 56, 28, 14, 7).
        norm_cfg: norm of the stem, downsamplers and depthwise convs (``BN``; ``SyncBN`` works).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH, prefix='backbone.')``; without
            ``prefix`` a ``backbone.``-prefixed or authors' checkpoint is still recognised. Any
            missing backbone key or shape mismatch is an error, never a silent partial load.
        pretrained: deprecated alias of a Pretrained ``init_cfg`` (mmseg configs pass it).

    Attributes ``channels`` / ``strides`` give all four stages, ``out_channels`` /
    ``out_strides`` the returned ones. Forward: (B, 3, H, W) -> tuple of (B, C_i, H/s_i, W/s_i).
    """

    arch_settings = {
        'ti': dict(base_dim=24, ratio=2),
        'xs': dict(base_dim=48, ratio=2),
        's': dict(base_dim=48, ratio=4),
        'b': dict(base_dim=96, ratio=2),
    }
    default_depths = (2, 2, 18, 2)
    min_input_size = 32

    def __init__(self,
                 arch: Union[str, dict] = 'xs',
                 out_indices: Sequence[int] = (3, ),
                 mask_kind: str = 'lower_triangular',
                 form: str = 'matrix',
                 drop_path_rate: float = 0.,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 final_norm: bool = True,
                 pretrain_img_size: int = 224,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either init_cfg or pretrained, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        settings = self.parse_arch(arch)
        base_dim, ratio = settings['base_dim'], settings['ratio']
        depths = tuple(settings.get('depths', self.default_depths))
        stem_channels = settings.get('stem_channels', 32)
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(i % len(depths) for i in out_indices)
        if not out_indices or any(i >= len(depths) for i in out_indices):
            raise ValueError(f'out_indices must name stages 0..{len(depths) - 1}')
        if form not in FORMS:
            raise ValueError(f'unknown form {form!r}; valid: {", ".join(FORMS)}')

        self.arch = settings
        self.depths = depths
        self.mask_kind = mask_kind
        self.form = form
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.channels = tuple(base_dim * 2**i for i in range(len(depths)))
        self.strides = tuple(2**(i + 2) for i in range(len(depths)))
        self.out_channels = tuple(self.channels[i] for i in out_indices)
        self.out_strides = tuple(self.strides[i] for i in out_indices)

        self.stem = nn.Sequential(
            ConvNorm(3, stem_channels, 3, stride=2, norm_cfg=norm_cfg), nn.ReLU6(inplace=True))
        self.stem_triton = False  # set by fuse(triton=True)
        drop_paths = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        kinds = block_mask_kinds(mask_kind, depths)
        self.stages = nn.ModuleList()
        in_channels = stem_channels
        for i, depth in enumerate(depths):
            grid = pretrain_img_size // self.strides[i]
            start = sum(depths[:i])
            self.stages.append(
                VMINetStage(in_channels, self.channels[i], depth, ratio, (grid, grid), kinds[i],
                            form, drop_paths[start:start + depth], norm_cfg))
            in_channels = self.channels[i]
        self.norm = build_norm_layer(norm_cfg, self.channels[-1])[1] if final_norm else None

        self.apply(self._init_module)
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_settings:
                raise ValueError(f'unknown VMINet arch {arch!r}; valid: '
                                 f'{", ".join(cls.arch_settings)} or a dict with base_dim, ratio')
            return dict(cls.arch_settings[key])
        if isinstance(arch, dict):
            missing = {'base_dim', 'ratio'} - set(arch)
            unknown = set(arch) - {'base_dim', 'ratio', 'depths', 'stem_channels'}
            if missing or unknown:
                raise ValueError(f'arch dict needs base_dim and ratio (optional depths, '
                                 f'stem_channels); missing {sorted(missing)}, unknown '
                                 f'{sorted(unknown)}')
            return dict(arch)
        raise TypeError(f'arch must be a str or dict, got {type(arch).__name__}')

    @staticmethod
    def _init_module(m):
        # As the authors' code: truncated normal (std 0.02) for the linear layers only (their
        # token weights are a Linear, hence alpha too), BatchNorm 1/0; convs keep PyTorch's
        # default (kaiming-uniform) init. A 0.02-std init of the convs as well makes the
        # Q*K product start ~100x smaller and training from scratch crawl.
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, VMISA):
            trunc_normal_(m.alpha, std=.02)
        elif isinstance(m, (_BatchNorm, nn.GroupNorm, nn.LayerNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def init_weights(self):
        if self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained':
            from .checkpoint import load_backbone_checkpoint
            load_backbone_checkpoint(self, self.init_cfg['checkpoint'],
                                     prefix=self.init_cfg.get('prefix'),
                                     map_location=self.init_cfg.get('map_location', 'cpu'))
            self._is_init = True
            self._freeze_stages()
        else:
            super().init_weights()

    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.stem] + list(self.stages[:self.frozen_stages])
        for module in frozen:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def fuse(self, triton: bool = False):
        """Inference only: fold every stem/downsample/depthwise BatchNorm into its conv and
        merge each block's Q and K projections; triton=True also runs the stem (conv + ReLU6),
        the downsamplers (conv + bias), the depthwise convs and everything after them in Triton
        kernels (CUDA, under torch.no_grad or inference_mode; the kernels after the convs:
        matrix form, C <= 64 or a multiple of 16, which every variant's widths are; elsewhere
        the PyTorch path runs).
        Outputs stay equal up to float rounding; the fused model has other state-dict keys and
        is not for training or saving. Calling it again only switches the kernels."""
        for m in list(self.modules()):  # fuse() replaces children: iterate over a copy
            if isinstance(m, VMISA):
                m.fuse(triton)  # its depthwise ConvNorm too
        self.stem[0].fuse()
        for stage in self.stages:  # the downsamplers' convs and biases in one kernel each
            stage.downsample.fuse(triton)
        # the stem's conv and ReLU6 in one kernel (cuDNN's 3-channel conv is slow), where the
        # norm was folded
        self.stem_triton = triton and isinstance(self.stem[0].norm, nn.Identity)
        if self.stem_triton:
            self.register_buffer('stem_table', vmisa_triton.stem_table(self.stem[0].conv.weight),
                                 persistent=False)
        return self

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stem: (B, 3, H, W) -> (B, stem_channels, ceil(H/2), ceil(W/2))."""
        if self.stem_triton and not torch.is_grad_enabled() and vmisa_triton.runs_on(x):
            conv = self.stem[0].conv
            return vmisa_triton.stem_conv(x, self.stem_table, conv.bias, conv.kernel_size[0],
                                          conv.stride[0], conv_dtype(x))
        return self.stem(x)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise ValueError(f'VMINet needs inputs of at least {self.min_input_size}x'
                             f'{self.min_input_size} (its total stride), got {h}x{w}')
        x = self.forward_stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == len(self.stages) - 1 and self.norm is not None:
                x = self.norm(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


# ----------------------------------------------------------------------------------------------
# The authors' checkpoint keys (spec, "Official checkpoint layout") -> ours
# ----------------------------------------------------------------------------------------------
_OFFICIAL_BLOCK_KEYS = [
    (r'conv\.conv\.', 'dwconv.conv.'),
    (r'conv\.bn\.', 'dwconv.norm.'),
    (r'f1\.conv\.', 'q_proj.'),
    (r'f2\.conv\.', 'k_proj.'),
    (r'g\.conv\.', 'out_proj.'),
]


def is_official_state_dict(state_dict: Dict[str, torch.Tensor]) -> bool:
    """True for the authors' layout (``stem.0.conv.weight``, ``stages.i.j.f1.conv.weight``...)."""
    return 'stem.0.conv.weight' in state_dict and any('.f1.conv.' in k for k in state_dict)


def convert_official_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename the authors' VMINet 2.0 keys to this backbone's (``head.*`` is returned as is).

    ``stages.i.0.*`` is the downsampler, ``stages.i.j.*`` (j >= 1) block j-1; ``sum.weight``
    (1, grid^2) becomes ``alpha`` (grid^2,); ``stack`` ([w_ctx, w_loc]) becomes two scalars.
    """
    converted = {}
    for key, value in state_dict.items():
        new = key
        if key.startswith('stem.0.'):
            new = key.replace('stem.0.bn.', 'stem.0.norm.')
        elif key.startswith('stages.'):
            _, i, j, rest = key.split('.', 3)
            if j == '0':
                new = f'stages.{i}.downsample.' + rest.replace('bn.', 'norm.', 1)
            else:
                prefix = f'stages.{i}.blocks.{int(j) - 1}.'
                if rest == 'sum.weight':
                    converted[prefix + 'alpha'] = value.reshape(-1)
                    continue
                if rest == 'stack':
                    converted[prefix + 'w_ctx'] = value[0].clone()
                    converted[prefix + 'w_loc'] = value[1].clone()
                    continue
                for pattern, repl in _OFFICIAL_BLOCK_KEYS:
                    if re.match(pattern, rest):
                        rest = re.sub('^' + pattern, repl, rest)
                        break
                else:
                    warnings.warn(f'unrecognised key in VMINet checkpoint: {key}')
                new = prefix + rest
        elif key.startswith('norm.'):
            new = key
        converted[new] = value
    return converted
