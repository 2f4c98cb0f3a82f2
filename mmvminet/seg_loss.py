"""Faster stand-ins for the two ops of mmseg's decode-head loss that dominate UperNet's step.

``BaseDecodeHead.loss_by_feat`` resizes each head's logits to the label size and scores them
with ``accuracy``. Profiled on an H200 (UperNet, 2 x 512x512, 150 classes,
docs/benchmarks.md), two kernels took 23 of the ~45 ms that the step spends outside the
backbone, whatever the backbone:

- the backward of the auxiliary head's 32x32 -> 512x512 bilinear resize: PyTorch's NCHW kernel
  scatters each output gradient into 4 inputs with atomic adds, and at 16x upsampling 1024
  outputs collide on every input (~7 ms per call);
- ``accuracy``'s ``topk(1, dim=1)`` over the resized logits (~4 ms per call), a sort where an
  argmax does.

``resize`` keeps mmseg's forward and computes the backward of an upsampling bilinear resize as
two small matrix products (bilinear interpolation is separable: Y = R^T X C, so
dL/dX = R dL/dY C^T), equal to PyTorch's up to the order of float additions. ``accuracy`` is
the same top-1 score through ``argmax`` (on exact ties of two class scores the chosen class may
differ; the score is only logged). ``use_fast_decode_head_ops`` points mmseg's decode-head
module at them, or back; ``mmvminet.hooks.FastDecodeHeadLossHook`` does so for a run.
"""
import torch
import torch.nn.functional as F
from mmseg.models.decode_heads import decode_head
from mmseg.models.losses.accuracy import accuracy as mmseg_accuracy
from mmseg.models.utils.wrappers import resize as mmseg_resize

# the matrix-product backward costs about (h_in + w_in) multiply-adds per output gradient, and
# PyTorch's atomics contend less the smaller the upsampling: inputs up to this side (UperNet's
# heads at 512x512 crops: 32 and 128 -> 512, measured in docs/benchmarks.md) take the products,
# larger ones keep PyTorch's backward
MAX_MATMUL_SIDE = 128


def interpolation_matrix(size_in: int, size_out: int, align_corners, device,
                         dtype=torch.float32) -> torch.Tensor:
    """(size_in, size_out) weights of 1-D linear interpolation: output o = sum_i W[i, o] x[i].

    Built by interpolating the identity with PyTorch itself, so the weights are exactly those
    its bilinear kernel uses along one axis."""
    eye = torch.eye(size_in, device=device, dtype=dtype)[:, None, :]
    return F.interpolate(eye, size=size_out, mode='linear', align_corners=align_corners)[:, 0]


class UpsampleBilinear(torch.autograd.Function):
    """mmseg's bilinear ``resize`` forward, backward by separable matrix products.

    input (N, C, h_in, w_in) -> output (N, C, h_out, w_out)."""

    @staticmethod
    def forward(ctx, input, size, align_corners, warning):
        ctx.input_size = input.shape[-2:]
        ctx.align_corners = align_corners
        return mmseg_resize(input, size, None, 'bilinear', align_corners, warning)

    @staticmethod
    def backward(ctx, grad_output):
        (h_in, w_in), (h_out, w_out) = ctx.input_size, grad_output.shape[-2:]
        # fp32 sums for bf16/fp16 gradients as well
        dtype = torch.promote_types(grad_output.dtype, torch.float32)
        rows, cols = (interpolation_matrix(n_in, n_out, ctx.align_corners, grad_output.device,
                                           dtype)
                      for n_in, n_out in ((h_in, h_out), (w_in, w_out)))
        # (N, C, h_out, w_out) @ (w_out, w_in) -> (N, C, h_out, w_in); (h_in, h_out) @ that
        grad_input = rows @ (grad_output.to(dtype) @ cols.t())
        return grad_input.to(grad_output.dtype), None, None, None


def resize(input, size=None, scale_factor=None, mode='nearest', align_corners=None,
           warning=True):
    """``mmseg.models.utils.resize``, with ``UpsampleBilinear``'s backward where it is faster:
    a bilinear upsampling to a given ``size`` of a 4-D input that needs a gradient."""
    if (mode == 'bilinear' and size is not None and scale_factor is None and input.dim() == 4
            and input.requires_grad and torch.is_grad_enabled()):
        h_in, w_in = input.shape[-2:]
        h_out, w_out = (int(s) for s in size)
        if h_in < h_out and w_in < w_out and max(h_in, w_in) <= MAX_MATMUL_SIDE:
            return UpsampleBilinear.apply(input, (h_out, w_out), align_corners, warning)
    return mmseg_resize(input, size, scale_factor, mode, align_corners, warning)


def accuracy(pred, target, topk=1, thresh=None, ignore_index=None):
    """``mmseg.models.losses.accuracy``: the top-1 case by ``argmax``, without a host sync;
    others (top-k, a score threshold, an empty batch) go to mmseg's.

    pred (N, C, ...) scores, target (N, ...) labels -> (1,) percent of non-ignored pixels whose
    highest-scoring class is the label."""
    if topk != 1 or thresh is not None or pred.size(0) == 0:
        return mmseg_accuracy(pred, target, topk, thresh, ignore_index)
    assert pred.ndim == target.ndim + 1 and pred.size(0) == target.size(0)
    correct = pred.argmax(dim=1) == target
    if ignore_index is not None:
        valid = target != ignore_index
        correct, total = correct & valid, valid.sum()
    else:
        total = torch.tensor(target.numel(), device=target.device)
    # mmseg's eps: an image whose pixels are all ignored scores ~100 instead of dividing by 0
    eps = torch.finfo(torch.float32).eps
    return (correct.sum().float().reshape(1) + eps) * (100.0 / (total.double() + eps)).float()


def use_fast_decode_head_ops(enabled: bool = True):
    """Point ``BaseDecodeHead`` (its loss and predict) at these ``resize`` and ``accuracy``, or
    back at mmseg's own. Other modules' names stay mmseg's."""
    decode_head.resize = resize if enabled else mmseg_resize
    decode_head.accuracy = accuracy if enabled else mmseg_accuracy
