"""Inference kernels for VMI-SA (Eq. 4 and 10) in Triton: the block after its depthwise conv
in two fused kernels, and the depthwise conv itself.

After the depthwise conv, the eager block runs ~10 memory-bound ops over (B, D, H, W) tensors
(Q, K, ReLU6, Q*K, the masked weighted sum, the expand, ReLU6, ...): N (5 C + 18 D) elements of
HBM traffic for N = B*H*W tokens (``tools/analysis/vmisa_traffic.py``). Here Q, K, Q*K and Y
never leave the chip, at the cost of computing Q and K twice:

    pass 1  (_context_kernel): read u, Q = ReLU6(W1 u), K = W2 u on chip, and per tile of tokens
            the partial context sum_t alpha_t M_t (Q*K)_t                      -> (B, tiles, D)
    pass 2  (_output_kernel):  read u and x, recompute Q*K, Y = ReLU6(w_ctx c + w_loc Q*K),
            out = x + W3 Y + b3                                                -> (B, H, W, C)

Traffic after the depthwise conv: 4 N C elements (u twice, x, out). Tensors are channels-last:
a (B, C, H, W) tensor whose memory is (B, H*W, C), so a tile of tokens is a (tokens, C) matrix
and the projections are tensor-core dots. Inference only (no autograd); the matrix form only
(the recurrent form's scan stays in PyTorch); C <= FUSED_MAX_CHANNELS: each tile of tokens
reloads the three weight matrices, so past that width torch.compile's GEMMs + fused elementwise
passes win. The depthwise kernels (_dwconv_kernel, and _dwconv_bf16_kernel for bf16) take each
of the K*K taps as one shifted load of a tile of tokens; they beat cuDNN on every VMINet-XS map.
The limit and all tile sizes come from tools/analysis/tune_vmisa_kernels.py (docs/benchmarks.md).

``vmisa_context_output`` and ``depthwise_conv`` are registered as the custom ops
``mmvminet::vmisa_fused`` and ``mmvminet::depthwise_conv`` so that torch.compile traces through
them. Without Triton (CPU, CI) ``available()`` is False and the model keeps its PyTorch path;
with TRITON_INTERPRET=1 the kernels run on the CPU (tests).
"""
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path is used
    triton = None

MASK_IDS = {'lower_triangular': 0, 'banded': 1, 'block_diagonal': 2, 'none': 3}
# Where the fused kernels beat torch.compile (tune_vmisa_kernels_h100.json): up to C = 96
# (VMINet-XS stages 0-1).
FUSED_MAX_CHANNELS = 96
INTERPRET = os.environ.get('TRITON_INTERPRET') == '1'
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _runs_on(x: torch.Tensor) -> bool:
    if triton is None or x.dtype not in DTYPES:
        return False
    return x.is_cuda or (INTERPRET and x.device.type == 'cpu')


def available(x: torch.Tensor, mask_kind: str, form: str) -> bool:
    """Whether the fused kernels run this block's input x (B, C, H, W)."""
    if x.shape[1] > FUSED_MAX_CHANNELS or form != 'matrix' or mask_kind not in MASK_IDS:
        return False
    return _runs_on(x)


def dwconv_available(x: torch.Tensor) -> bool:
    """Whether the depthwise-conv kernels run on x (B, C, H, W)."""
    return _runs_on(x)


if triton is not None:

    @triton.jit
    def _mask(t, n, band, MASK: tl.constexpr):
        """M[t, n] of build_mask (Eq. 8, 12, 13) for token indices t (T, 1), channels n (1, N)."""
        if MASK == 0:
            m = n <= t
        elif MASK == 1:
            diff = t - n
            m = tl.where(diff < 0, -diff, diff) <= band // 2
        elif MASK == 2:
            even = band - band % 2
            m = (t // 2 == n // 2) & (t < even) & (n < even)
        else:
            m = (t >= 0) & (n >= 0)
        return m

    @triton.jit
    def _qk_tile(u, w_ptr, b_ptr, c, n, C, D, PRECISION: tl.constexpr):
        """(Q*K) of a token tile: u (T, CP) -> ReLU6(u W1^T + b1) * (u W2^T + b2), (T, BD) fp32.
        w_ptr is the merged (2D, C) weight, rows [0, D) for Q and [D, 2D) for K."""
        w_mask = (c[:, None] < C) & (n[None, :] < D)
        wq = tl.load(w_ptr + n[None, :] * C + c[:, None], mask=w_mask, other=0.)
        wk = tl.load(w_ptr + (n[None, :] + D) * C + c[:, None], mask=w_mask, other=0.)
        bq = tl.load(b_ptr + n, mask=n < D, other=0.).to(tl.float32)
        bk = tl.load(b_ptr + D + n, mask=n < D, other=0.).to(tl.float32)
        q = tl.dot(u, wq, input_precision=PRECISION) + bq[None, :]
        k = tl.dot(u, wk, input_precision=PRECISION) + bk[None, :]
        return tl.minimum(tl.maximum(q, 0.), 6.) * k

    @triton.jit
    def _context_kernel(u_ptr, w_ptr, b_ptr, alpha_ptr, partial_ptr, L, band,
                        C: tl.constexpr, D: tl.constexpr, MASK: tl.constexpr,
                        BLOCK_T: tl.constexpr, CP: tl.constexpr, BLOCK_D: tl.constexpr,
                        PRECISION: tl.constexpr):
        """partial[b, tile, :] = sum over the tile's tokens t of alpha_t M_t (Q*K)_t."""
        pid_b = tl.program_id(0).to(tl.int64)
        tile = tl.program_id(1)
        t = tile * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.arange(0, CP)
        u = tl.load(u_ptr + pid_b * L * C + t[:, None] * C + c[None, :],
                    mask=(t[:, None] < L) & (c[None, :] < C), other=0.)
        alpha = tl.load(alpha_ptr + t, mask=t < L, other=0.).to(tl.float32)
        out_row = partial_ptr + (pid_b * tl.num_programs(1) + tile) * D
        for d0 in range(0, D, BLOCK_D):
            n = d0 + tl.arange(0, BLOCK_D)
            a = _qk_tile(u, w_ptr, b_ptr, c, n, C, D, PRECISION)
            weight = tl.where(_mask(t[:, None], n[None, :], band, MASK), alpha[:, None], 0.)
            tl.store(out_row + n, tl.sum(a * weight, axis=0), mask=n < D)

    @triton.jit
    def _output_kernel(u_ptr, x_ptr, out_ptr, w_ptr, b_ptr, ctx_ptr, w3_ptr, b3_ptr,
                       w_ctx_ptr, w_loc_ptr, L, C: tl.constexpr, D: tl.constexpr,
                       BLOCK_T: tl.constexpr, CP: tl.constexpr, BLOCK_D: tl.constexpr,
                       PRECISION: tl.constexpr):
        """out = x + W3 ReLU6(w_ctx c + w_loc (Q*K)) + b3 for a tile of tokens (Eq. 10)."""
        pid_b = tl.program_id(0).to(tl.int64)
        t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        c = tl.arange(0, CP)
        offsets = pid_b * L * C + t[:, None] * C + c[None, :]
        tile_mask = (t[:, None] < L) & (c[None, :] < C)
        u = tl.load(u_ptr + offsets, mask=tile_mask, other=0.)
        w_ctx = tl.load(w_ctx_ptr).to(tl.float32)
        w_loc = tl.load(w_loc_ptr).to(tl.float32)
        acc = tl.zeros((BLOCK_T, CP), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            n = d0 + tl.arange(0, BLOCK_D)
            a = _qk_tile(u, w_ptr, b_ptr, c, n, C, D, PRECISION)
            ctx = tl.load(ctx_ptr + pid_b * D + n, mask=n < D, other=0.)
            y = tl.minimum(tl.maximum(w_ctx * ctx[None, :] + w_loc * a, 0.), 6.)
            w3 = tl.load(w3_ptr + c[None, :] * D + n[:, None],
                         mask=(n[:, None] < D) & (c[None, :] < C), other=0.)
            acc += tl.dot(y.to(u.dtype), w3, input_precision=PRECISION)
        b3 = tl.load(b3_ptr + c, mask=c < C, other=0.).to(tl.float32)
        x = tl.load(x_ptr + offsets, mask=tile_mask, other=0.).to(tl.float32)
        tl.store(out_ptr + offsets, (x + acc + b3[None, :]).to(out_ptr.dtype.element_ty),
                 mask=tile_mask)


    @triton.jit
    def _dwconv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, H, W: tl.constexpr, C: tl.constexpr,
                       K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        """out[b, h, w, c] = b[c] + sum_ij w[i, j, c] x[b, h + i - K//2, w + j - K//2, c] (zero
        padding) on channels-last (B, H*W, C) memory, for BLOCK_T consecutive tokens (raster
        order) x BLOCK_C channels per program; w is the (K*K, C) fp32 tap table.

        In raster order a tap (i, j) is a constant shift (i - K//2) W + (j - K//2) of the token
        index, so with W and C compile-time constants each tap is one load at a fixed offset
        from the tile's pointers; its zero padding is a per-token predicate, shared by the tile's
        channels (whole vectors) when BLOCK_C divides C."""
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        b = tl.program_id(1).to(tl.int64)
        c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        h, w = t // W, t % W
        tokens = H * W
        x_tile = x_ptr + b * tokens * C + t[:, None] * C + c[None, :]
        acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32)
        # a loop over kernel rows, unrolled over columns only: unrolling all K*K taps lets the
        # compiler hoist every load and spill registers
        for i in range(K):
            row_ok = (h >= K // 2 - i) & (h < H + K // 2 - i)
            for j in tl.static_range(K):
                ok = row_ok & (w >= K // 2 - j) & (w < W + K // 2 - j)
                if C % BLOCK_C == 0:
                    wv = tl.load(w_ptr + (i * K + j) * C + c)
                    xv = tl.load(x_tile + ((i - K // 2) * W + j - K // 2) * C,
                                 mask=ok[:, None], other=0.)
                else:
                    wv = tl.load(w_ptr + (i * K + j) * C + c, mask=c < C, other=0.)
                    xv = tl.load(x_tile + ((i - K // 2) * W + j - K // 2) * C,
                                 mask=ok[:, None] & (c < C)[None, :], other=0.)
                acc += xv.to(tl.float32) * wv[None, :]
        acc += tl.load(b_ptr + c, mask=c < C, other=0.).to(tl.float32)[None, :]
        tl.store(out_ptr + b * tokens * C + t[:, None] * C + c[None, :],
                 acc.to(out_ptr.dtype.element_ty), mask=(t < tokens)[:, None] & (c < C)[None, :])

    @triton.jit
    def _dwconv_bf16_kernel(x_ptr, w_ptr, b_ptr, out_ptr, H, W: tl.constexpr, C: tl.constexpr,
                            K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        """_dwconv_kernel for bf16 with even C, reading x and writing out as int32 channel pairs
        (x_ptr, out_ptr: int32 views). A bf16 is the top half of an fp32, so the pair's even
        channel is v << 16 and its odd channel v & 0xffff0000: one shift or mask per element, where
        the conversions of _dwconv_kernel outnumber its FMAs (docs/benchmarks.md)."""
        PAIRS: tl.constexpr = BLOCK_C // 2
        t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
        b = tl.program_id(1).to(tl.int64)
        p = tl.program_id(2) * PAIRS + tl.arange(0, PAIRS)
        p_ok = p < C // 2
        h, w = t // W, t % W
        tokens = H * W
        x_tile = x_ptr + b * tokens * (C // 2) + t[:, None] * (C // 2) + p[None, :]
        pair = 2 * p[:, None] + tl.arange(0, 2)[None, :]  # (PAIRS, 2) channel indices
        acc_even = tl.zeros((BLOCK_T, PAIRS), dtype=tl.float32)
        acc_odd = tl.zeros((BLOCK_T, PAIRS), dtype=tl.float32)
        for i in range(K):  # rows looped, columns unrolled: see _dwconv_kernel
            row_ok = (h >= K // 2 - i) & (h < H + K // 2 - i)
            for j in tl.static_range(K):
                ok = row_ok & (w >= K // 2 - j) & (w < W + K // 2 - j)
                if C % BLOCK_C == 0:
                    w_even, w_odd = tl.split(tl.load(w_ptr + (i * K + j) * C + pair))
                    v = tl.load(x_tile + ((i - K // 2) * W + j - K // 2) * (C // 2),
                                mask=ok[:, None], other=0)
                else:
                    w_even, w_odd = tl.split(tl.load(w_ptr + (i * K + j) * C + pair,
                                                     mask=p_ok[:, None], other=0.))
                    v = tl.load(x_tile + ((i - K // 2) * W + j - K // 2) * (C // 2),
                                mask=ok[:, None] & p_ok[None, :], other=0)
                acc_even += (v << 16).to(tl.float32, bitcast=True) * w_even[None, :]
                acc_odd += (v & -65536).to(tl.float32, bitcast=True) * w_odd[None, :]
        b_even, b_odd = tl.split(tl.load(b_ptr + pair, mask=p_ok[:, None], other=0.))
        even = (acc_even + b_even.to(tl.float32)[None, :]).to(tl.bfloat16)
        odd = (acc_odd + b_odd.to(tl.float32)[None, :]).to(tl.bfloat16)
        packed = ((even.to(tl.int16, bitcast=True).to(tl.int32) & 65535)
                  | (odd.to(tl.int16, bitcast=True).to(tl.int32) << 16))
        tl.store(out_ptr + b * tokens * (C // 2) + t[:, None] * (C // 2) + p[None, :], packed,
                 mask=(t < tokens)[:, None] & p_ok[None, :])


def _launch(kernel, grid, *args, wrap=True, **meta):
    """Launch through torch.library.wrap_triton so that torch.compile can trace the call (the
    custom ops launch directly in eager mode). wrap=False: a direct launch, for calls outside
    the custom ops (tuning), where wrap_triton would go through a slow Python dispatch."""
    if wrap and hasattr(torch.library, 'wrap_triton') and not INTERPRET:
        kernel = torch.library.wrap_triton(kernel)
    kernel[grid](*args, **meta)


def _blocks(channels: int):
    """(tokens per tile, padded C, channels of D per step, warps) for C channels: the fastest
    tiles of tools/analysis/tune_vmisa_kernels.py on VMINet-XS's stages (H100, batch 256, bf16;
    docs/benchmarks/tune_vmisa_kernels_h100.json)."""
    cp = max(16, triton.next_power_of_2(channels))
    if cp <= 64:
        return 128, cp, 32, 4
    if cp <= 128:
        return 64, cp, 32, 4
    if cp <= 256:
        return 128, cp, 32, 8
    return 32, cp, 32, 4


def _vmisa_fused_impl(x, u, qk_weight, qk_bias, alpha, w_ctx, w_loc, out_weight, out_bias,
                      mask_id, blocks, wrap=True):
    """The kernels with tiles blocks = (BLOCK_T, CP, BLOCK_D, warps) (see ``_blocks``)."""
    b, c, h, w = x.shape
    num_tokens, hidden = h * w, qk_bias.numel() // 2
    block_t, cp, block_d, warps = blocks
    precision = 'ieee' if u.dtype == torch.float32 else 'tf32'
    tiles = triton.cdiv(num_tokens, block_t)
    # channels-last memory of (B, C, H, W) is (B, H*W, C); .contiguous() copies only otherwise
    u = u.permute(0, 2, 3, 1).contiguous()
    x = x.permute(0, 2, 3, 1).contiguous()
    partial = torch.empty(b, tiles, hidden, device=x.device, dtype=torch.float32)
    _launch(_context_kernel, (b, tiles), u, qk_weight, qk_bias, alpha, partial, num_tokens,
            min(num_tokens, hidden), C=c, D=hidden, MASK=mask_id, BLOCK_T=block_t, CP=cp,
            BLOCK_D=block_d, PRECISION=precision, num_warps=warps, wrap=wrap)
    context = partial.sum(1)  # (B, D), fp32: a fixed order, so runs repeat bit for bit
    out = torch.empty_like(x)
    _launch(_output_kernel, (b, tiles), u, x, out, qk_weight, qk_bias, context, out_weight,
            out_bias, w_ctx, w_loc, num_tokens, C=c, D=hidden, BLOCK_T=block_t, CP=cp,
            BLOCK_D=block_d, PRECISION=precision, num_warps=warps, wrap=wrap)
    return out.permute(0, 3, 1, 2)


def _vmisa_fused(x: torch.Tensor, u: torch.Tensor, qk_weight: torch.Tensor,
                 qk_bias: torch.Tensor, alpha: torch.Tensor, w_ctx: torch.Tensor,
                 w_loc: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor,
                 mask_id: int) -> torch.Tensor:
    return _vmisa_fused_impl(x, u, qk_weight, qk_bias, alpha, w_ctx, w_loc, out_weight,
                             out_bias, mask_id, _blocks(x.shape[1]))


if triton is not None and hasattr(torch.library, 'triton_op'):
    _vmisa_fused_op = torch.library.triton_op('mmvminet::vmisa_fused', mutates_args=())(
        _vmisa_fused)
else:
    _vmisa_fused_op = _vmisa_fused


def vmisa_context_output(x: torch.Tensor, u: torch.Tensor, qk_weight: torch.Tensor,
                         qk_bias: torch.Tensor, alpha: torch.Tensor, w_ctx: torch.Tensor,
                         w_loc: torch.Tensor, out_weight: torch.Tensor,
                         out_bias: torch.Tensor, mask_kind: str, blocks=None) -> torch.Tensor:
    """The block after its depthwise conv: x + W3 ReLU6(w_ctx c + w_loc Q*K) + b3 (Eq. 10).

    x, u: (B, C, H, W), u = BN(DWConv(x)); qk_weight (2D, C) and qk_bias (2D,): the merged Q and
    K projections; alpha (H*W,) the resized token weights; w_ctx, w_loc 0-d; out_weight (C, D),
    out_bias (C,). Weights are cast to u's dtype (autocast). Returns (B, C, H, W), channels-last.
    blocks: tiles other than ``_blocks``'s, for tuning (tools/analysis/tune_vmisa_kernels.py).
    """
    dtype = u.dtype
    args = (x.to(dtype), u, qk_weight.reshape(qk_weight.shape[0], -1).to(dtype).contiguous(),
            qk_bias.to(dtype).contiguous(), alpha.float().contiguous(), w_ctx.float(),
            w_loc.float(), out_weight.reshape(out_weight.shape[0], -1).to(dtype).contiguous(),
            out_bias.to(dtype).contiguous(), MASK_IDS[mask_kind])
    if blocks is not None:
        return _vmisa_fused_impl(*args, blocks, wrap=False)
    # the interpreter runs kernels eagerly on CPU tensors, outside the custom op
    return (_vmisa_fused if INTERPRET else _vmisa_fused_op)(*args)


def dwconv_config(channels: int, width: int, dtype: torch.dtype):
    """(BLOCK_T, BLOCK_C, warps) of the depthwise kernels for a (C, W) map: the fastest tiles of
    tools/analysis/tune_vmisa_kernels.py on VMINet-XS's stages (H200, batch 256, bf16: W = 56,
    28, 14, 7 for C = 48, 96, 192, 384)."""
    if width >= 56:
        return 128, 16, 4
    if width >= 28:
        return 64, 32, 4
    if width >= 14:
        return 32, 64, 4
    return 64, 64 if dtype == torch.bfloat16 else 32, 4


def tap_weights(weight: torch.Tensor) -> torch.Tensor:
    """A depthwise conv weight (C, 1, K, K) as the kernels' (K*K, C) fp32 tap table."""
    return weight.detach().reshape(weight.shape[0], -1).t().float().contiguous()


def dwconv_kernel(dtype: torch.dtype, channels: int):
    """The depthwise kernel for a map of this dtype and width, and whether it takes the map as
    int32 channel pairs (bf16 with even C: ``_dwconv_bf16_kernel``)."""
    pairs = dtype == torch.bfloat16 and channels % 2 == 0
    return (_dwconv_bf16_kernel if pairs else _dwconv_kernel), pairs


def _depthwise_conv_impl(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, config,
                         wrap: bool = True) -> torch.Tensor:
    """The kernel with tiles config = (BLOCK_T, BLOCK_C, warps); wrap: see ``_launch``."""
    b, c, h, w = x.shape
    k = round(taps.shape[0]**0.5)
    block_t, block_c, warps = config
    x = x.permute(0, 2, 3, 1).contiguous()  # no copy for channels-last input
    out = torch.empty_like(x)
    grid = (triton.cdiv(h * w, block_t), b, triton.cdiv(c, block_c))
    kernel, pairs = dwconv_kernel(x.dtype, c)
    x_arg, out_arg = (x.view(torch.int32), out.view(torch.int32)) if pairs else (x, out)
    _launch(kernel, grid, x_arg, taps.float(), bias, out_arg, h, W=w, C=c, K=k,
            BLOCK_T=block_t, BLOCK_C=block_c, num_warps=warps, wrap=wrap)
    return out.permute(0, 3, 1, 2)


def _depthwise_conv(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _depthwise_conv_impl(x, taps, bias, dwconv_config(x.shape[1], x.shape[3], x.dtype))


if triton is not None and hasattr(torch.library, 'triton_op'):
    _depthwise_conv_op = torch.library.triton_op('mmvminet::depthwise_conv', mutates_args=())(
        _depthwise_conv)
else:
    _depthwise_conv_op = _depthwise_conv


def depthwise_conv(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """F.conv2d(x, weight, bias, padding=K // 2, groups=C) in the Triton kernels.

    x (B, C, H, W) (channels-last avoids a copy); taps (K*K, C) = ``tap_weights(weight)`` of a
    (C, 1, K, K) weight, odd K; bias (C,). Returns (B, C, H, W) in x's dtype, channels-last;
    accumulates in fp32.
    """
    k = round(taps.shape[0]**0.5) if taps.dim() == 2 else 0
    if taps.dim() != 2 or taps.shape[1] != x.shape[1] or k * k != taps.shape[0] or k % 2 == 0:
        raise ValueError(f'depthwise_conv needs a (K*K, C) tap table (tap_weights of a (C, 1, K, '
                         f'K) weight, odd K) for C = {x.shape[1]}, got {tuple(taps.shape)}')
    args = (x, taps.contiguous(), bias.contiguous())
    return (_depthwise_conv if INTERPRET else _depthwise_conv_op)(*args)
