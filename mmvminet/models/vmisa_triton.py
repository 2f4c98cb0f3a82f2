"""Inference kernels for VMI-SA (Eq. 4 and 10) in Triton: the block after its depthwise conv
as a fused pair or a GEMM pair of kernels, the depthwise conv itself, and the network's stem
(conv + ReLU6; cuDNN runs a 3-channel conv with a slow generic kernel) and its downsamplers
(conv + bias in one pass; inductor adds the bias of a cuDNN conv in a kernel of its own).

After the depthwise conv, the eager block runs ~10 memory-bound ops over (B, D, H, W) tensors
(Q, K, ReLU6, Q*K, the masked weighted sum, the expand, ReLU6, ...): N (5 C + 18 D) elements of
HBM traffic for N = B*H*W tokens (``tools/kernels/vmisa_traffic.py``). Tensors are
channels-last: a (B, C, H, W) tensor whose memory is (B, H*W, C), so a tile of tokens is a
(tokens, C) matrix and the projections are tensor-core dots.

Narrow blocks (C <= FUSED_MAX_CHANNELS), the fused pair: Q, K, Q*K and Y never leave the chip,
at the cost of computing Q and K twice (traffic 4 N C: u twice, x, out). A program takes a
span of one image's tokens, loads the (small) weights into shared memory once and walks the
span in pipelined tiles:

    pass 1  (_context_kernel): read u, Q = ReLU6(W1 u), K = W2 u on chip, and per span the
            partial context sum_t alpha_t M_t (Q*K)_t                          -> (B, spans, D)
    pass 2  (_output_kernel):  read u and x, recompute Q*K, Y = ReLU6(w_ctx c + w_loc Q*K),
            out = x + W3 Y + b3                                                -> (B, H, W, C)

Wider blocks, the GEMM pair: A = Q*K is stored once (traffic N C + 2 N D + 2 N C), each pass a
GEMM over the batch's B*L tokens with the element-wise work in its prologue or epilogue:

    pass 1  (_qk_gemm_kernel):        A = ReLU6(W1 u) * (W2 u) and per tile and image the
                                      partial context (a dot); _context_combine_kernel sums
                                      them
    pass 2  (_output_gemm_kernel):    out = x + W3 ReLU6(w_ctx c + w_loc A) + b3, a program
                                      taking all of C so that the prologue runs once per token

Inference only (no autograd); the matrix form only (the recurrent form's scan stays in
PyTorch). The depthwise kernel (_dwconv_kernel) streams down the rows of a strip of the map:
each input row is read once and added to the K output rows it feeds; a lane holds one (image,
channel), its taps in registers and the strip's columns as a tuple of registers, so that the
column shifts are static indices. It beats cuDNN on every VMINet-XS map.
The split between the pairs and all tile sizes come from tools/kernels/tune_vmisa_kernels.py
(docs/benchmarks.md).

``vmisa_context_output``, ``depthwise_conv``, ``stem_conv`` and ``conv`` are registered as the
custom ops ``mmvminet::vmisa_fused``, ``mmvminet::depthwise_conv``, ``mmvminet::stem_conv`` and
``mmvminet::conv`` so that torch.compile traces through them. Without Triton (CPU, CI)
``available()`` is False and the model keeps its PyTorch path; with TRITON_INTERPRET=1 the
kernels run on the CPU (tests).
"""
import functools
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the PyTorch path is used
    triton = None

MASK_IDS = {'lower_triangular': 0, 'banded': 1, 'block_diagonal': 2, 'none': 3}
# The fused pair up to here, the GEMM pair above (H200, VMINet-XS, tune_gemm_h200.json): the
# fused pair won at C = 48 (stage 0), the GEMM pair at C = 96, 192, 384 (stages 1-3).
FUSED_MAX_CHANNELS = 64
INTERPRET = os.environ.get('TRITON_INTERPRET') == '1'
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def runs_on(x: torch.Tensor) -> bool:
    """Whether the kernels run on x at all: Triton is there, x is CUDA (or CPU under the
    interpreter) in a dtype they take. All the depthwise and stem kernels need."""
    if triton is None or x.dtype not in DTYPES:
        return False
    return x.is_cuda or (INTERPRET and x.device.type == 'cpu')


def available(x: torch.Tensor, mask_kind: str, form: str, hidden: int) -> bool:
    """Whether the kernels after the depthwise conv run this block's input x (B, C, H, W)
    with D = hidden: the fused pair up to FUSED_MAX_CHANNELS, the GEMM pair on wider C where
    its tiles fit (C and D multiples of 16)."""
    if form != 'matrix' or mask_kind not in MASK_IDS:
        return False
    c = x.shape[1]
    if c > FUSED_MAX_CHANNELS and gemm_blocks(c, hidden, x.shape[2] * x.shape[3]) is None:
        return False
    return runs_on(x)


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
    def _load_columns(ptr, rows, row_ok, c0, WIDTH: tl.constexpr, C: tl.constexpr):
        """(T, WIDTH) tile of a (tokens, C) matrix: columns c0 .. c0 + WIDTH (zeros past C)
        of the rows at element offsets rows (T,)."""
        c = c0 + tl.arange(0, WIDTH)
        return tl.load(ptr + rows[:, None] + c[None, :],
                       mask=row_ok[:, None] & (c < C)[None, :], other=0.)

    @triton.jit
    def _transposed_tile(w_ptr, r0, c0, ROWS: tl.constexpr, COLS: tl.constexpr, R, C):
        """(COLS, ROWS) tile of W^T for a row-major (R, C) weight W: rows r0.., columns c0..,
        zeros past its edges."""
        r = r0 + tl.arange(0, ROWS)
        c = c0 + tl.arange(0, COLS)
        return tl.load(w_ptr + r[None, :] * C + c[:, None],
                       mask=(r < R)[None, :] & (c < C)[:, None], other=0.)

    @triton.jit
    def _qk_weights(w_ptr, b_ptr, C: tl.constexpr, D: tl.constexpr, CA: tl.constexpr,
                    CB: tl.constexpr, HAS_B: tl.constexpr, BLOCK_D: tl.constexpr):
        """The merged (2D, C) weight as tuples of W1^T and W2^T tiles, two per BLOCK_D chunk
        of D: channels [0, CA) and [CA, CA + CB) (the second a repeat of the first where
        C <= CA), and the biases per chunk (fp32). Loaded once per program: the tiles stay in
        shared memory for all its tokens."""
        wq, wk, bq, bk = (), (), (), ()
        for j in tl.static_range((D + BLOCK_D - 1) // BLOCK_D):
            wq += (_transposed_tile(w_ptr, j * BLOCK_D, 0, BLOCK_D, CA, D, C), )
            wk += (_transposed_tile(w_ptr + D * C, j * BLOCK_D, 0, BLOCK_D, CA, D, C), )
            if HAS_B:
                wq += (_transposed_tile(w_ptr, j * BLOCK_D, CA, BLOCK_D, CB, D, C), )
                wk += (_transposed_tile(w_ptr + D * C, j * BLOCK_D, CA, BLOCK_D, CB, D, C), )
            else:
                wq += (wq[2 * j], )
                wk += (wk[2 * j], )
            n = j * BLOCK_D + tl.arange(0, BLOCK_D)
            bq += (tl.load(b_ptr + n, mask=n < D, other=0.).to(tl.float32), )
            bk += (tl.load(b_ptr + D + n, mask=n < D, other=0.).to(tl.float32), )
        return wq, wk, bq, bk

    @triton.jit
    def _qk_chunk(ua, ub, wq, wk, bq, bk, j: tl.constexpr, HAS_B: tl.constexpr,
                  PRECISION: tl.constexpr):
        """(Q*K) of a token tile for chunk j of D: ReLU6(u W1^T + b1) * (u W2^T + b2),
        (T, BLOCK_D) fp32, u given as its channel parts ua (T, CA) and ub (T, CB)."""
        q = tl.dot(ua, wq[2 * j], input_precision=PRECISION)
        k = tl.dot(ua, wk[2 * j], input_precision=PRECISION)
        if HAS_B:
            q = tl.dot(ub, wq[2 * j + 1], q, input_precision=PRECISION)
            k = tl.dot(ub, wk[2 * j + 1], k, input_precision=PRECISION)
        q += bq[j][None, :]
        k += bk[j][None, :]
        return tl.minimum(tl.maximum(q, 0.), 6.) * k

    @triton.jit
    def _span_tile(u_ptr, g, L, t0, end, C: tl.constexpr, BLOCK_T: tl.constexpr,
                   CA: tl.constexpr, CB: tl.constexpr, HAS_B: tl.constexpr):
        """The tile of image g's tokens t0 .. t0 + BLOCK_T (those before end): token indices
        t (BLOCK_T,), their mask, their element offsets in the (tokens, C) matrices, and u's
        channel parts ua (BLOCK_T, CA), ub (BLOCK_T, CB) (ua again where not HAS_B)."""
        t = t0 + tl.arange(0, BLOCK_T)
        ok = t < end
        rows = (g * L + t) * C
        ua = _load_columns(u_ptr, rows, ok, 0, CA, C)
        ub = _load_columns(u_ptr, rows, ok, CA, CB, C) if HAS_B else ua
        return t, ok, rows, ua, ub

    @triton.jit
    def _store_residual(x_ptr, out_ptr, rows, ok, acc, bias, c0, WIDTH: tl.constexpr,
                        C: tl.constexpr):
        """out = x + acc + bias on columns c0 .. c0 + WIDTH (those before C) of the rows."""
        c = c0 + tl.arange(0, WIDTH)
        x = _load_columns(x_ptr, rows, ok, c0, WIDTH, C).to(tl.float32)
        tl.store(out_ptr + rows[:, None] + c[None, :],
                 (x + acc + bias[None, :]).to(out_ptr.dtype.element_ty),
                 mask=ok[:, None] & (c < C)[None, :])

    @triton.jit
    def _context_kernel(u_ptr, w_ptr, b_ptr, alpha_ptr, partial_ptr, L, band, span,
                        C: tl.constexpr, D: tl.constexpr, MASK: tl.constexpr,
                        BLOCK_T: tl.constexpr, CA: tl.constexpr, CB: tl.constexpr,
                        HAS_B: tl.constexpr, BLOCK_D: tl.constexpr, STAGES: tl.constexpr,
                        PRECISION: tl.constexpr):
        """partial[g, s, :] = sum over tokens t in [s span, (s + 1) span) of image g of
        alpha_t M_t (Q*K)_t: program (g, s) walks its span in BLOCK_T tiles, adding
        alpha M (Q*K) into (BLOCK_T, BLOCK_D) accumulators, and sums their rows across
        threads once at the end instead of once per tile."""
        CHUNKS: tl.constexpr = (D + BLOCK_D - 1) // BLOCK_D
        wq, wk, bq, bk = _qk_weights(w_ptr, b_ptr, C, D, CA, CB, HAS_B, BLOCK_D)
        g = tl.program_id(0).to(tl.int64)
        start = tl.program_id(1) * span
        end = tl.minimum(start + span, L)
        sums = (tl.zeros((BLOCK_T, BLOCK_D), dtype=tl.float32), ) * CHUNKS
        for t0 in tl.range(start, end, BLOCK_T, num_stages=STAGES):
            t, ok, rows, ua, ub = _span_tile(u_ptr, g, L, t0, end, C, BLOCK_T, CA, CB, HAS_B)
            alpha = tl.load(alpha_ptr + t, mask=ok, other=0.).to(tl.float32)
            added = ()
            for j in tl.static_range(CHUNKS):
                n = j * BLOCK_D + tl.arange(0, BLOCK_D)
                a = _qk_chunk(ua, ub, wq, wk, bq, bk, j, HAS_B, PRECISION)
                weight = tl.where(_mask(t[:, None], n[None, :], band, MASK), alpha[:, None], 0.)
                added += (sums[j] + a * weight, )
            sums = added
        out_row = partial_ptr + (g * tl.num_programs(1) + tl.program_id(1)) * D
        for j in tl.static_range(CHUNKS):
            n = j * BLOCK_D + tl.arange(0, BLOCK_D)
            tl.store(out_row + n, tl.sum(sums[j], axis=0), mask=n < D)

    @triton.jit
    def _output_kernel(u_ptr, x_ptr, out_ptr, w_ptr, b_ptr, ctx_ptr, w3_ptr, b3_ptr, mix_ptr,
                       L, span, C: tl.constexpr, D: tl.constexpr, BLOCK_T: tl.constexpr,
                       CA: tl.constexpr, CB: tl.constexpr, HAS_B: tl.constexpr,
                       BLOCK_D: tl.constexpr, STAGES: tl.constexpr, PRECISION: tl.constexpr):
        """out = x + W3 ReLU6(w_ctx c + w_loc (Q*K)) + b3 (Eq. 10) for the tokens
        [s span, (s + 1) span) of image g, program (g, s), in BLOCK_T tiles; out's channels
        in the parts [0, CA) and [CA, CA + CB) as for u."""
        CHUNKS: tl.constexpr = (D + BLOCK_D - 1) // BLOCK_D
        wq, wk, bq, bk = _qk_weights(w_ptr, b_ptr, C, D, CA, CB, HAS_B, BLOCK_D)
        g = tl.program_id(0).to(tl.int64)
        w_ctx = tl.load(mix_ptr)
        w_loc = tl.load(mix_ptr + 1)
        w3, ctx = (), ()
        for j in tl.static_range(CHUNKS):  # (BLOCK_D, CA) and (BLOCK_D, CB) tiles of W3^T
            w3 += (_transposed_tile(w3_ptr, 0, j * BLOCK_D, CA, BLOCK_D, C, D), )
            if HAS_B:
                w3 += (_transposed_tile(w3_ptr, CA, j * BLOCK_D, CB, BLOCK_D, C, D), )
            else:
                w3 += (w3[2 * j], )
            n = j * BLOCK_D + tl.arange(0, BLOCK_D)
            ctx += (w_ctx * tl.load(ctx_ptr + g * D + n, mask=n < D, other=0.), )
        ca = tl.arange(0, CA)
        cb = CA + tl.arange(0, CB)
        b3a = tl.load(b3_ptr + ca, mask=ca < C, other=0.).to(tl.float32)
        b3b = tl.load(b3_ptr + cb, mask=cb < C, other=0.).to(tl.float32)
        start = tl.program_id(1) * span
        end = tl.minimum(start + span, L)
        for t0 in tl.range(start, end, BLOCK_T, num_stages=STAGES):
            t, ok, rows, ua, ub = _span_tile(u_ptr, g, L, t0, end, C, BLOCK_T, CA, CB, HAS_B)
            acc_a = tl.zeros((BLOCK_T, CA), dtype=tl.float32)
            acc_b = tl.zeros((BLOCK_T, CB), dtype=tl.float32)
            for j in tl.static_range(CHUNKS):
                a = _qk_chunk(ua, ub, wq, wk, bq, bk, j, HAS_B, PRECISION)
                y = tl.minimum(tl.maximum(ctx[j][None, :] + w_loc * a, 0.), 6.).to(ua.dtype)
                acc_a = tl.dot(y, w3[2 * j], acc_a, input_precision=PRECISION)
                if HAS_B:
                    acc_b = tl.dot(y, w3[2 * j + 1], acc_b, input_precision=PRECISION)
            _store_residual(x_ptr, out_ptr, rows, ok, acc_a, b3a, 0, CA, C)
            if HAS_B:
                _store_residual(x_ptr, out_ptr, rows, ok, acc_b, b3b, CA, CB, C)

    @triton.jit
    def _qk_gemm_kernel(u_ptr, w_ptr, b_ptr, alpha_ptr, a_ptr, partial_ptr, M, L, band,
                        C: tl.constexpr, D: tl.constexpr, MASK: tl.constexpr,
                        SEGMENTS: tl.constexpr, SEGMENTS_P: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        STAGES: tl.constexpr, PRECISION: tl.constexpr):
        """GEMM pair, pass 1: a GEMM over the batch's M = B*L tokens (u: (M, C)) with the
        element-wise work in its epilogue. For BLOCK_M tokens x BLOCK_N channels n of D:
        A = ReLU6(u W1^T + b1) * (u W2^T + b2) -> a (M, D) in u's dtype, and per image g the
        tile's rows give sum_t alpha_t M[t, n] A[t, n] -> partial[tile, g - first image, n]
        (fp32 sums of A as stored, as the PyTorch path sums its Q*K; a tile spans at most
        SEGMENTS <= SEGMENTS_P images, SEGMENTS_P a power of two >= 16). Needs BLOCK_K | C,
        BLOCK_N | D."""
        pid = tl.program_id(0)
        N_TILES: tl.constexpr = D // BLOCK_N
        tile = pid // N_TILES  # column tiles of one token tile run side by side: u from L2
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        n = (pid % N_TILES) * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < M
        u_rows = u_ptr + rows.to(tl.int64)[:, None] * C
        acc_q = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc_k = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in tl.range(0, C, BLOCK_K, num_stages=STAGES):
            c = k0 + tl.arange(0, BLOCK_K)
            u = tl.load(u_rows + c[None, :], mask=row_ok[:, None], other=0.)
            wq = tl.load(w_ptr + n[None, :] * C + c[:, None])  # (BLOCK_K, BLOCK_N) of W1^T
            wk = tl.load(w_ptr + (n[None, :] + D) * C + c[:, None])
            acc_q = tl.dot(u, wq, acc_q, input_precision=PRECISION)
            acc_k = tl.dot(u, wk, acc_k, input_precision=PRECISION)
        q = acc_q + tl.load(b_ptr + n).to(tl.float32)[None, :]
        k = acc_k + tl.load(b_ptr + D + n).to(tl.float32)[None, :]
        a = (tl.minimum(tl.maximum(q, 0.), 6.) * k).to(a_ptr.dtype.element_ty)
        tl.store(a_ptr + rows.to(tl.int64)[:, None] * D + n[None, :], a, mask=row_ok[:, None])
        image = rows // L
        t = rows - image * L
        alpha = tl.load(alpha_ptr + t, mask=row_ok, other=0.).to(tl.float32)
        # the per-image sums as one dot on the tensor cores, cheaper than a tl.sum over the
        # tokens per image: (SEGMENTS_P images x BLOCK_M tokens) of alpha_t where token t is
        # in that image, times M * A
        s = tl.arange(0, SEGMENTS_P)
        first = (tile * BLOCK_M) // L
        weight = tl.where((image[None, :] == first + s[:, None]) & row_ok[None, :],
                          alpha[None, :], 0.).to(a.dtype)
        masked = tl.where(_mask(t[:, None], n[None, :], band, MASK), a, 0.).to(a.dtype)
        part = tl.dot(weight, masked, input_precision=PRECISION)  # (SEGMENTS_P, BLOCK_N)
        tl.store(partial_ptr + (tile * SEGMENTS + s[:, None]) * D + n[None, :], part,
                 mask=s[:, None] < SEGMENTS)

    @triton.jit
    def _context_combine_kernel(partial_ptr, ctx_ptr, L, D: tl.constexpr,
                                SEGMENTS: tl.constexpr, BLOCK_M: tl.constexpr,
                                BLOCK_D: tl.constexpr):
        """ctx[g, :] = the sum of image g's partial contexts, over the token tiles that overlap
        it in a fixed order (runs repeat bit for bit)."""
        g = tl.program_id(0)
        n = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        acc = tl.zeros((BLOCK_D, ), dtype=tl.float32)
        for tile in range((g * L) // BLOCK_M, ((g + 1) * L - 1) // BLOCK_M + 1):
            segment = g - (tile * BLOCK_M) // L
            acc += tl.load(partial_ptr + (tile * SEGMENTS + segment) * D + n, mask=n < D,
                           other=0.)
        tl.store(ctx_ptr + g * D + n, acc, mask=n < D)

    @triton.jit
    def _output_gemm_kernel(a_ptr, x_ptr, out_ptr, ctx_ptr, w3_ptr, b3_ptr, mix_ptr, M, L,
                            images, C: tl.constexpr, D: tl.constexpr,
                            SEGMENTS: tl.constexpr, BLOCK_M: tl.constexpr,
                            BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, BLOCK_K: tl.constexpr,
                            STAGES: tl.constexpr, PRECISION: tl.constexpr):
        """GEMM pair, pass 2: a GEMM with the element-wise work as its prologue and the
        residual as its epilogue. For BLOCK_M tokens x BLOCK_N channels of C:
        out = x + ReLU6(w_ctx c_g + w_loc A) W3^T + b3 (Eq. 10), c_g the context of each row's
        image (one of the tile's first SEGMENTS). The BLOCK_N columns are BLOCK_N // CHUNK
        accumulators of CHUNK (a power of two) that share each prologue tile Y: with all of C in
        one program, Y is computed once per token instead of once per CHUNK columns. Needs
        BLOCK_K | D, CHUNK | BLOCK_N | C."""
        pid = tl.program_id(0)
        N_TILES: tl.constexpr = C // BLOCK_N
        CHUNKS: tl.constexpr = BLOCK_N // CHUNK
        tile = pid // N_TILES
        rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
        n0 = (pid % N_TILES) * BLOCK_N
        row_ok = rows < M
        image = rows // L
        first = (tile * BLOCK_M) // L
        a_rows = a_ptr + rows.to(tl.int64)[:, None] * D
        w_ctx = tl.load(mix_ptr)
        w_loc = tl.load(mix_ptr + 1)
        acc = (tl.zeros((BLOCK_M, CHUNK), dtype=tl.float32), ) * CHUNKS
        for k0 in tl.range(0, D, BLOCK_K, num_stages=STAGES):
            d = k0 + tl.arange(0, BLOCK_K)
            a = tl.load(a_rows + d[None, :], mask=row_ok[:, None], other=0.).to(tl.float32)
            # each row's context: a select among the tile's images, not a 2-D gather
            ctx = tl.zeros((BLOCK_M, BLOCK_K), dtype=tl.float32)
            for s in tl.static_range(SEGMENTS):
                c_s = tl.load(ctx_ptr + (first + s) * D + d, mask=first + s < images, other=0.)
                ctx = tl.where((image == first + s)[:, None], c_s[None, :], ctx)
            y = tl.minimum(tl.maximum(w_ctx * ctx + w_loc * a, 0.), 6.)
            y = y.to(a_ptr.dtype.element_ty)
            summed = ()
            for j in tl.static_range(CHUNKS):
                n = n0 + j * CHUNK + tl.arange(0, CHUNK)
                w3 = tl.load(w3_ptr + n[None, :] * D + d[:, None])  # (BLOCK_K, CHUNK) of W3^T
                summed += (tl.dot(y, w3, acc[j], input_precision=PRECISION), )
            acc = summed
        for j in tl.static_range(CHUNKS):
            n = n0 + j * CHUNK + tl.arange(0, CHUNK)
            offsets = rows.to(tl.int64)[:, None] * C + n[None, :]
            x = tl.load(x_ptr + offsets, mask=row_ok[:, None], other=0.).to(tl.float32)
            out = x + acc[j] + tl.load(b3_ptr + n).to(tl.float32)[None, :]
            tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])

    @triton.jit
    def _dwconv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, B, H, W: tl.constexpr, C: tl.constexpr,
                       K: tl.constexpr, ROWS: tl.constexpr, STRIP: tl.constexpr,
                       IMAGES: tl.constexpr, BLOCK_C: tl.constexpr):
        """out[b, h, w, c] = b[c] + sum_ij w[i, j, c] x[b, h + i - K//2, w + j - K//2, c] (zero
        padding) on channels-last (B, H*W, C) memory; w is the (K*K, C) fp32 tap table. A
        program computes ROWS output rows x STRIP output columns for IMAGES images x BLOCK_C
        channels: one (image, channel) per lane, so that a lane's K*K taps stay in registers.

        The columns are tuples of (IMAGES, BLOCK_C) values, one per column: the K column
        shifts of a row are static indices into the tuple of the row's STRIP + K - 1 input
        values, not loads or data moves. It streams down the input rows the outputs need:
        input row r is tap row i of output row r - i + K//2, so it is loaded once and added to
        K rows of accumulators (acc[k * STRIP + o]: column o of output row r - K//2 + k). Row
        k = 0 is then complete: it is stored and the rows shift by one. Rows past the map's
        edges are not read; accumulators of rows outside the program's ROWS are computed (a
        halo of K//2 rows each side)."""
        HALF: tl.constexpr = K // 2
        STRIPS: tl.constexpr = (W + STRIP - 1) // STRIP
        r0 = tl.program_id(0) * ROWS
        b = tl.program_id(1) * IMAGES + tl.arange(0, IMAGES)[:, None]
        s0 = (tl.program_id(2) % STRIPS) * STRIP
        c = (tl.program_id(2) // STRIPS) * BLOCK_C + tl.arange(0, BLOCK_C)[None, :]
        c_ok = (c < C) | (C % BLOCK_C == 0)  # all true (no masks) when BLOCK_C divides C
        lane_ok = (b < B) & c_ok
        image = b.to(tl.int64) * (H * W * C) + c  # (IMAGES, BLOCK_C) offsets of pixel (0, 0)
        taps = ()
        for t in tl.static_range(K * K):
            taps += (tl.load(w_ptr + t * C + c, mask=c_ok, other=0.), )
        bias = tl.load(b_ptr + c, mask=c_ok, other=0.).to(tl.float32)
        zero = tl.zeros((IMAGES, BLOCK_C), dtype=tl.float32)
        acc = (zero, ) * (K * STRIP)
        r_end = tl.minimum(r0 + ROWS + HALF, H)
        for r in range(tl.maximum(r0 - HALF, 0), r_end):
            v = ()
            for q in tl.static_range(STRIP + K - 1):
                col = s0 + q - HALF
                v += (tl.load(x_ptr + image + (r * W + col) * C,
                              mask=lane_ok & (col >= 0) & (col < W), other=0.).to(tl.float32), )
            added = ()
            for k in tl.static_range(K):
                for o in tl.static_range(STRIP):
                    a = acc[k * STRIP + o]
                    for j in tl.static_range(K):
                        a += v[o + j] * taps[(K - 1 - k) * K + j]
                    added += (a, )
            o_row = r - HALF
            _store_row(out_ptr, image, added, bias, o_row, s0, lane_ok & (o_row >= r0)
                       & (o_row < r0 + ROWS), W, C, STRIP, 0)
            acc = ()
            for i in tl.static_range(STRIP, K * STRIP):
                acc += (added[i], )
            acc += (zero, ) * STRIP
        for k in tl.static_range(HALF):  # rows whose last input rows lie past the bottom edge
            o_row = r_end - HALF + k
            _store_row(out_ptr, image, acc, bias, o_row, s0, lane_ok & (o_row >= r0)
                       & (o_row < r0 + ROWS) & (o_row < H), W, C, STRIP, k)

    @triton.jit
    def _store_row(out_ptr, image, acc, bias, o_row, s0, ok, W: tl.constexpr, C: tl.constexpr,
                   STRIP: tl.constexpr, k: tl.constexpr):
        """Stores accumulator row k (acc[k * STRIP + o], o < STRIP) plus the bias as output row
        o_row, columns s0 + o, of the depthwise kernel's lanes (image: their pixel-(0, 0)
        offsets), where ok and the column is inside the map."""
        for o in tl.static_range(STRIP):
            col = s0 + o
            tl.store(out_ptr + image + (o_row * W + col) * C,
                     (acc[k * STRIP + o] + bias).to(out_ptr.dtype.element_ty),
                     mask=ok & (col < W))

    @triton.jit
    def _stem_conv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, H, W, OH, OW, stride_b, stride_c,
                          stride_h, stride_w, CIN: tl.constexpr, COUT: tl.constexpr,
                          COUT_P: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr,
                          TAPS: tl.constexpr, BLOCK_P: tl.constexpr, PRECISION: tl.constexpr):
        """out[b, p, :] = ReLU6(bias + sum_t w[t, :] x[b, tap t of output pixel p]) for the
        stem's conv (CIN -> COUT, K x K, STRIDE, zero padding K // 2) on BLOCK_P output pixels
        of image b: an im2col tile (BLOCK_P, TAPS) gathered from x at any strides (NCHW or
        channels-last, any float dtype, cast to w's), times the (TAPS, COUT_P) table w (rows
        t = (ci, i, j), zero past CIN*K*K) on the tensor cores. out: (B, OH*OW, COUT)."""
        b = tl.program_id(1).to(tl.int64)
        p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
        oh = p // OW
        ow = p - oh * OW
        t = tl.arange(0, TAPS)
        ci, i, j = t // (K * K), (t // K) % K, t % K
        ih = oh[:, None] * STRIDE + i[None, :] - K // 2
        iw = ow[:, None] * STRIDE + j[None, :] - K // 2
        ok = ((p < OH * OW)[:, None] & (t < CIN * K * K)[None, :] & (ih >= 0) & (ih < H)
              & (iw >= 0) & (iw < W))
        patch = tl.load(x_ptr + b * stride_b + ci[None, :] * stride_c + ih * stride_h
                        + iw * stride_w, mask=ok, other=0.)
        co = tl.arange(0, COUT_P)
        w = tl.load(w_ptr + t[:, None] * COUT_P + co[None, :])
        acc = tl.dot(patch.to(w.dtype), w, input_precision=PRECISION)
        acc += tl.load(b_ptr + co, mask=co < COUT, other=0.).to(tl.float32)[None, :]
        out = tl.minimum(tl.maximum(acc, 0.), 6.)
        tl.store(out_ptr + (b * OH * OW + p)[:, None] * COUT + co[None, :],
                 out.to(out_ptr.dtype.element_ty),
                 mask=(p < OH * OW)[:, None] & (co < COUT)[None, :])

    @triton.jit
    def _conv_kernel(x_ptr, w_ptr, b_ptr, out_ptr, H, W, OH, OW, M, CIN: tl.constexpr,
                     COUT: tl.constexpr, K: tl.constexpr, STRIDE: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                     STAGES: tl.constexpr, PRECISION: tl.constexpr):
        """out[p, n] = b[n] + sum_(i, j, ci) w[(i K + j) CIN + ci, n] x[tap (i, j) of p, ci]: a
        K x K conv (zero padding K // 2, STRIDE) as an implicit GEMM over the M = B*OH*OW
        output pixels p of channels-last x (B, H, W, CIN) and the (K*K*CIN, COUT) table w.
        A program takes BLOCK_M pixels x BLOCK_N output channels; each K step gathers one tap's
        BLOCK_K input channels of its pixels (zeros past CIN and the map's edges)."""
        CHUNKS: tl.constexpr = (CIN + BLOCK_K - 1) // BLOCK_K
        p = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        p_ok, n_ok = p < M, n < COUT
        image = p // (OH * OW)
        oh = (p - image * (OH * OW)) // OW
        ow = p - image * (OH * OW) - oh * OW
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for step in tl.range(0, K * K * CHUNKS, num_stages=STAGES):
            tap = step // CHUNKS
            c = (step - tap * CHUNKS) * BLOCK_K + tl.arange(0, BLOCK_K)
            c_ok = (c < CIN) | (CIN % BLOCK_K == 0)  # all true (no masks) when BLOCK_K | CIN
            ih = oh * STRIDE + tap // K - K // 2
            iw = ow * STRIDE + tap % K - K // 2
            ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            pixel = ((image * H + ih) * W + iw).to(tl.int64)
            a = tl.load(x_ptr + pixel[:, None] * CIN + c[None, :],
                        mask=ok[:, None] & c_ok[None, :], other=0.)
            w = tl.load(w_ptr + (tap * CIN + c)[:, None] * COUT + n[None, :],
                        mask=c_ok[:, None] & n_ok[None, :], other=0.)
            acc = tl.dot(a, w, acc, input_precision=PRECISION)
        acc += tl.load(b_ptr + n, mask=n_ok, other=0.).to(tl.float32)[None, :]
        tl.store(out_ptr + p.to(tl.int64)[:, None] * COUT + n[None, :],
                 acc.to(out_ptr.dtype.element_ty), mask=p_ok[:, None] & n_ok[None, :])


def _launch(kernel, grid, *args, wrap=True, **meta):
    """Launch through torch.library.wrap_triton so that torch.compile can trace the call (the
    custom ops launch directly in eager mode). wrap=False: a direct launch, for calls outside
    the custom ops (tuning), where wrap_triton would go through a slow Python dispatch."""
    if wrap and hasattr(torch.library, 'wrap_triton') and not INTERPRET:
        kernel = torch.library.wrap_triton(kernel)
    kernel[grid](*args, **meta)


def _custom_op(name: str, fn):
    """fn as the custom op ``mmvminet::name``, so that torch.compile traces through it (fn
    itself where Triton or torch.library.triton_op is missing)."""
    if triton is not None and hasattr(torch.library, 'triton_op'):
        return torch.library.triton_op(f'mmvminet::{name}', mutates_args=())(fn)
    return fn


def _pow2_at_least(n: int) -> int:
    """The smallest power of two >= max(n, 16) (tl.dot's least side)."""
    return max(16, 1 << (n - 1).bit_length())


def _blocks(channels: int):
    """(BLOCK_T tokens per tile, BLOCK_D channels of D per step, warps, pipeline stages,
    programs per SM) of the fused pair: the fastest of tools/kernels/tune_vmisa_kernels.py on
    VMINet-XS's stage 0 (H200, batch 256, bf16, C = 48; tune_fused_segments_h200.json) is one
    program per image, which the spans per image rounded down give at batch 256 (264 // 256);
    2 per SM fill the SMs when few images are cut into spans (detection's batches of 2)."""
    return 64, 32, 4, 3, 2


def _channel_parts(channels: int):
    """C as the fused pair's two column parts (CA, CB, HAS_B): CA the largest power of two
    <= C (at least 16, tl.dot's least side), CB a power of two >= 16 covering the rest
    (masked past C) where HAS_B; so C = 48 runs as 32 + 16 instead of 64 padded."""
    ca = max(16, 1 << (channels.bit_length() - 1))
    rest = channels - ca
    return ca, max(16, 1 << max(rest - 1, 0).bit_length()), rest > 0


@functools.lru_cache(maxsize=None)
def _multiprocessors(device: torch.device) -> int:
    """The SMs of a CUDA device (4 under the interpreter: several spans per image in tests)."""
    if device.type != 'cuda':
        return 4
    return torch.cuda.get_device_properties(device).multi_processor_count


def _vmisa_fused_impl(x, u, qk_weight, qk_bias, alpha, mixing, out_weight, out_bias, mask_id,
                      blocks, wrap=True):
    """The fused pair with tiles blocks = (BLOCK_T, BLOCK_D, warps, stages, programs per SM)
    (see ``_blocks``). Each image's tokens are cut into spans of whole tiles, as few as keep
    about ``programs per SM`` programs on every SM, so that a program loads the weights once
    for many tiles and pipelines the loads of its tiles."""
    b, c, h, w = x.shape
    num_tokens, hidden = h * w, qk_bias.numel() // 2
    block_t, block_d, warps, stages, per_sm = blocks
    ca, cb, has_b = _channel_parts(c)
    precision = 'ieee' if u.dtype == torch.float32 else 'tf32'
    tiles = triton.cdiv(num_tokens, block_t)
    spans = max(1, min(tiles, per_sm * _multiprocessors(x.device) // b))
    span = triton.cdiv(tiles, spans) * block_t
    grid = (b, triton.cdiv(num_tokens, span))
    # channels-last memory of (B, C, H, W) is (B, H*W, C); .contiguous() copies only otherwise
    u = u.permute(0, 2, 3, 1).contiguous()
    x = x.permute(0, 2, 3, 1).contiguous()
    meta = dict(C=c, D=hidden, BLOCK_T=block_t, CA=ca, CB=cb, HAS_B=has_b, BLOCK_D=block_d,
                STAGES=stages, PRECISION=precision, num_warps=warps, wrap=wrap)
    partial = torch.empty(b, grid[1], hidden, device=x.device, dtype=torch.float32)
    _launch(_context_kernel, grid, u, qk_weight, qk_bias, alpha, partial, num_tokens,
            min(num_tokens, hidden), span, MASK=mask_id, **meta)
    context = partial.sum(1)  # (B, D), fp32: a fixed order, so runs repeat bit for bit
    out = torch.empty_like(x)
    _launch(_output_kernel, grid, u, x, out, qk_weight, qk_bias, context, out_weight,
            out_bias, mixing, num_tokens, span, **meta)
    return out.permute(0, 3, 1, 2)


def _pow2_divisor(n: int, cap: int = 64) -> int:
    """The largest power of two dividing n, at most cap."""
    return min(n & -n, cap)


def _tokens_per_tile(num_tokens: int, most: int, images: int) -> int:
    """BLOCK_M: most tokens, halved on small maps so that a tile of tokens spans at most
    ``images`` images (pass 1's per-image sums are a dot of 16 rows; pass 2's per-image
    selects are unrolled)."""
    block_m = most
    while block_m > 16 and (block_m - 1) // num_tokens + 2 > images:
        block_m //= 2
    return block_m


def gemm_blocks(channels: int, hidden: int, num_tokens: int):
    """The GEMM pair's tiles for C channels, D hidden, L tokens per image, or None where
    tl.dot cannot tile them (C or D not a multiple of 16): per pass (BLOCK_M, BLOCK_N,
    BLOCK_K, warps, stages). Pass 2 takes all of C per program where its accumulators fit
    (BLOCK_M * BLOCK_N <= 64 * 384, fp32), else the widest multiple of 16 dividing C that fits.
    The best tiles, or within 2%, of tune_stem_gemm_h200.json (H200, VMINet-XS stages 1-3)."""
    if _pow2_divisor(channels) < 16 or _pow2_divisor(hidden) < 16:
        return None
    # pass 1: 64 x 128 tiles on large maps where D allows, else 128 x 64
    n1 = 128 if hidden % 128 == 0 and num_tokens >= 128 else _pow2_divisor(hidden)
    m1, m2 = _tokens_per_tile(num_tokens, 8192 // n1, 16), _tokens_per_tile(num_tokens, 64, 3)
    n2 = next(channels // g for g in range(1, channels // 16 + 1)
              if channels % g == 0 and (channels // g) % 16 == 0
              and m2 * (channels // g) <= 64 * 384)
    return ((m1, n1, _pow2_divisor(channels, 32), 4, 3),
            (m2, n2, _pow2_divisor(hidden, 32), 4, 3))


def _vmisa_gemm_impl(x, u, qk_weight, qk_bias, alpha, mixing, out_weight, out_bias, mask_id,
                     blocks, wrap=True):
    """The GEMM pair with tiles blocks = (pass 1, pass 2), each (BLOCK_M, BLOCK_N, BLOCK_K,
    warps, stages) (see ``gemm_blocks``). Tiles of tokens run over the whole batch (M = B*L
    rows), so no tile is padded to an image's L; the per-image context comes from per-tile,
    per-image partial sums."""
    b, c, h, w = x.shape
    num_tokens, hidden = h * w, qk_bias.numel() // 2
    rows = b * num_tokens
    (m1, n1, k1, warps1, stages1), (m2, n2, k2, warps2, stages2) = blocks
    if hidden % n1 or c % k1 or c % n2 or n2 % 16 or hidden % k2:
        raise ValueError(f'GEMM tiles {blocks} do not divide C = {c}, D = {hidden}')
    precision = 'ieee' if u.dtype == torch.float32 else 'tf32'
    u = u.permute(0, 2, 3, 1).contiguous()  # (B, H*W, C) memory: the (M, C) matrix
    x = x.permute(0, 2, 3, 1).contiguous()
    a = torch.empty(rows, hidden, device=x.device, dtype=u.dtype)
    tiles, segments1 = triton.cdiv(rows, m1), (m1 - 1) // num_tokens + 2
    partial = torch.empty(tiles, segments1, hidden, device=x.device, dtype=torch.float32)
    _launch(_qk_gemm_kernel, (tiles * (hidden // n1), ), u, qk_weight, qk_bias, alpha, a,
            partial, rows, num_tokens, min(num_tokens, hidden), C=c, D=hidden, MASK=mask_id,
            SEGMENTS=segments1, SEGMENTS_P=_pow2_at_least(segments1), BLOCK_M=m1, BLOCK_N=n1,
            BLOCK_K=k1, STAGES=stages1, PRECISION=precision, num_warps=warps1, wrap=wrap)
    context = torch.empty(b, hidden, device=x.device, dtype=torch.float32)
    block_d = min(128, triton.next_power_of_2(hidden))
    _launch(_context_combine_kernel, (b, triton.cdiv(hidden, block_d)), partial, context,
            num_tokens, D=hidden, SEGMENTS=segments1, BLOCK_M=m1, BLOCK_D=block_d, wrap=wrap)
    out = torch.empty_like(x)
    _launch(_output_gemm_kernel, (triton.cdiv(rows, m2) * (c // n2), ), a, x, out, context,
            out_weight, out_bias, mixing, rows, num_tokens, b, C=c, D=hidden,
            SEGMENTS=(m2 - 1) // num_tokens + 2, BLOCK_M=m2, BLOCK_N=n2, CHUNK=_pow2_divisor(n2),
            BLOCK_K=k2, STAGES=stages2, PRECISION=precision, num_warps=warps2, wrap=wrap)
    return out.permute(0, 3, 1, 2)


def _impl_and_blocks(channels: int, hidden: int, num_tokens: int):
    """The kernels for a block's shape and their default tiles: the fused pair up to
    FUSED_MAX_CHANNELS, the GEMM pair above (None where neither applies)."""
    if channels <= FUSED_MAX_CHANNELS:
        return _vmisa_fused_impl, _blocks(channels)
    blocks = gemm_blocks(channels, hidden, num_tokens)
    return (_vmisa_gemm_impl, blocks) if blocks else (None, None)


def _vmisa_fused(x: torch.Tensor, u: torch.Tensor, qk_weight: torch.Tensor,
                 qk_bias: torch.Tensor, alpha: torch.Tensor, mixing: torch.Tensor,
                 out_weight: torch.Tensor, out_bias: torch.Tensor, mask_id: int) -> torch.Tensor:
    impl, blocks = _impl_and_blocks(x.shape[1], qk_bias.numel() // 2, x.shape[2] * x.shape[3])
    return impl(x, u, qk_weight, qk_bias, alpha, mixing, out_weight, out_bias, mask_id, blocks)


_vmisa_fused_op = _custom_op('vmisa_fused', _vmisa_fused)


def vmisa_context_output(x: torch.Tensor, u: torch.Tensor, qk_weight: torch.Tensor,
                         qk_bias: torch.Tensor, alpha: torch.Tensor, mixing: torch.Tensor,
                         out_weight: torch.Tensor, out_bias: torch.Tensor, mask_kind: str,
                         blocks=None) -> torch.Tensor:
    """The block after its depthwise conv: x + W3 ReLU6(w_ctx c + w_loc Q*K) + b3 (Eq. 10).

    x, u: (B, C, H, W), u = BN(DWConv(x)); qk_weight (2D, C) and qk_bias (2D,): the merged Q and
    K projections; alpha (H*W,) the resized token weights; mixing (2,): w_ctx, w_loc (a 1-d
    tensor: inductor's freezing passes a 0-d constant to a kernel as a number); out_weight (C, D),
    out_bias (C,). Weights are cast to u's dtype (autocast). Returns (B, C, H, W), channels-last.
    blocks: tiles other than ``_blocks``'s, for tuning (tools/kernels/tune_vmisa_kernels.py).
    """
    dtype = u.dtype
    args = (x.to(dtype), u, qk_weight.reshape(qk_weight.shape[0], -1).to(dtype).contiguous(),
            qk_bias.to(dtype).contiguous(), alpha.float().contiguous(), mixing.float().contiguous(),
            out_weight.reshape(out_weight.shape[0], -1).to(dtype).contiguous(),
            out_bias.to(dtype).contiguous(), MASK_IDS[mask_kind])
    if blocks is not None:
        impl = _vmisa_gemm_impl if len(blocks) == 2 else _vmisa_fused_impl
        return impl(*args, blocks, wrap=False)
    # the interpreter runs kernels eagerly on CPU tensors, outside the custom op
    return (_vmisa_fused if INTERPRET else _vmisa_fused_op)(*args)


def dwconv_config(channels: int, height: int, width: int):
    """(ROWS, STRIP, BLOCK_C, warps) of the depthwise kernel for a (C, H, W) map; a program's
    lanes are IMAGES = 32 warps / BLOCK_C images x BLOCK_C channels, BLOCK_C the largest power
    of two <= 32 dividing C (at least 8: past C masked). A program streams down the whole map
    (at most 56 rows, the tallest timed; taller maps, as in detection, are split), in
    strips of 7 columns, or 14 on maps 14 to 27 wide. The fastest of 8 tiles per stage
    timed on VMINet-XS (H200, batch 256, bf16: maps 56, 28, 14, 7 wide for C = 48, 96, 192,
    384; docs/benchmarks/tune_dwconv_lanes_h200.json, made by
    tools/kernels/tune_vmisa_kernels.py --what dwconv)."""
    rows = min(height, 56)
    strip = 14 if 14 <= width < 28 else 7
    block_c = min(32, max(8, channels & -channels))
    return rows, strip, block_c, 1


def dwconv_images(config) -> int:
    """IMAGES of the depthwise kernel at tiles config = (ROWS, STRIP, BLOCK_C, warps): a
    program's lanes, one per thread, are IMAGES images x BLOCK_C channels."""
    _, _, block_c, warps = config
    return 32 * warps // block_c


def dwconv_grid(batch: int, channels: int, height: int, width: int, config):
    """The depthwise kernel's launch grid at tiles config = (ROWS, STRIP, BLOCK_C, warps):
    (row tiles, image groups, column strips x channel groups)."""
    rows, strip, block_c, _ = config
    return (triton.cdiv(height, rows), triton.cdiv(batch, dwconv_images(config)),
            triton.cdiv(width, strip) * triton.cdiv(channels, block_c))


def _depthwise_conv_impl(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor, config,
                         wrap: bool = True) -> torch.Tensor:
    """The kernel with tiles config = (ROWS, STRIP, BLOCK_C, warps); wrap: see ``_launch``."""
    b, c, h, w = x.shape
    k = round(taps.shape[0]**0.5)
    rows, strip, block_c, warps = config
    if block_c > 32 * warps or (32 * warps) % block_c:
        raise ValueError(f'BLOCK_C = {block_c} must divide the {32 * warps} lanes of {warps} '
                         f'warps')
    x = x.permute(0, 2, 3, 1).contiguous()  # no copy for channels-last input
    out = torch.empty_like(x)
    grid = dwconv_grid(b, c, h, w, config)
    _launch(_dwconv_kernel, grid, x, taps.float(), bias, out, b, h, W=w, C=c, K=k, ROWS=rows,
            STRIP=strip, IMAGES=dwconv_images(config), BLOCK_C=block_c, num_warps=warps,
            wrap=wrap)
    return out.permute(0, 3, 1, 2)


def tap_weights(weight: torch.Tensor) -> torch.Tensor:
    """A depthwise conv weight (C, 1, K, K) as the kernel's (K*K, C) fp32 tap table."""
    return weight.detach().reshape(weight.shape[0], -1).t().float().contiguous()


def _depthwise_conv(x: torch.Tensor, taps: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    if INTERPRET:  # the interpreter's cost is per operation, not per lane: one program
        lanes = triton.next_power_of_2(b) * triton.next_power_of_2(c)
        config = (h, w, triton.next_power_of_2(c), max(1, lanes // 32))
    else:
        config = dwconv_config(c, h, w)
    return _depthwise_conv_impl(x, taps, bias, config)


_depthwise_conv_op = _custom_op('depthwise_conv', _depthwise_conv)


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


def stem_table(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight (COUT, CIN, K, K) as the stem kernel's (TAPS, COUT_P) fp32 table: row
    t = (ci, i, j), zero rows up to TAPS and zero columns up to COUT_P (powers of two >= 16)."""
    cout = weight.shape[0]
    rows = weight.detach().reshape(cout, -1).t().float()
    table = rows.new_zeros(_pow2_at_least(rows.shape[0]), _pow2_at_least(cout))
    table[:rows.shape[0], :cout] = rows
    return table


# BLOCK_P output pixels per program and warps (H200, VMINet's 3 -> 32 stem at 224 px, batch 256,
# bf16: tune_stem_gemm_h200.json)
STEM_TILE = (128, 2)


def _stem_conv(x: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, kernel_size: int,
               stride: int, dtype: torch.dtype) -> torch.Tensor:
    return _stem_conv_impl(x, table, bias, kernel_size, stride, dtype, STEM_TILE)


def _stem_conv_impl(x, table, bias, kernel_size, stride, dtype, tile, wrap=True):
    """The stem kernel with tile = (BLOCK_P, warps); wrap: see ``_launch``."""
    b, cin, h, w = x.shape
    cout, (block_p, warps) = bias.numel(), tile
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1  # padding K // 2, odd K
    out = torch.empty(b, oh, ow, cout, device=x.device, dtype=dtype)
    _launch(_stem_conv_kernel, (triton.cdiv(oh * ow, block_p), b), x, table.to(dtype), bias, out,
            h, w, oh, ow, *x.stride(), CIN=cin, COUT=cout, COUT_P=table.shape[1], K=kernel_size,
            STRIDE=stride, TAPS=table.shape[0], BLOCK_P=block_p,
            PRECISION='ieee' if dtype == torch.float32 else 'tf32', num_warps=warps, wrap=wrap)
    return out.permute(0, 3, 1, 2)


_stem_conv_op = _custom_op('stem_conv', _stem_conv)


def stem_conv(x: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, kernel_size: int,
              stride: int, dtype: torch.dtype) -> torch.Tensor:
    """ReLU6(F.conv2d(x, weight, bias, stride, padding=K // 2)) in the Triton kernel, for a
    conv with few input channels (the stem's 3), where cuDNN falls back to a slow kernel.

    x (B, CIN, H, W), any strides and float dtype (read as is: no cast or layout copy first);
    table (TAPS, COUT_P) = ``stem_table(weight)`` of a (COUT, CIN, K, K) weight, odd K;
    bias (COUT,). Returns (B, COUT, ceil(H / stride), ceil(W / stride)) in dtype (the autocast
    dtype under autocast), channels-last; the products in dtype, summed in fp32.
    """
    taps = x.shape[1] * kernel_size**2
    if (kernel_size % 2 == 0 or table.dim() != 2 or table.shape[0] != _pow2_at_least(taps)
            or table.shape[1] != _pow2_at_least(bias.numel())):
        raise ValueError(f'stem_conv needs stem_table of a ({bias.numel()}, {x.shape[1]}, K, K) '
                         f'weight with odd K = {kernel_size}, got a {tuple(table.shape)} table')
    args = (x, table.contiguous(), bias.contiguous(), kernel_size, stride, dtype)
    return (_stem_conv if INTERPRET else _stem_conv_op)(*args)


def conv_table(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight (COUT, CIN, K, K) as the conv kernel's (K*K*CIN, COUT) fp32 table: row
    (i K + j) CIN + ci, so that a K step reads one tap's channels."""
    cout, cin, k, _ = weight.shape
    return weight.detach().permute(2, 3, 1, 0).reshape(k * k * cin, cout).float().contiguous()


def conv_config(in_channels: int, out_channels: int):
    """(BLOCK_M, BLOCK_N, BLOCK_K, warps, stages) of the conv kernel: the fastest tiles of
    tools/kernels/tune_vmisa_kernels.py on VMINet-XS's downsamplers (H200, batch 256, bf16:
    32 -> 48, 48 -> 96, 96 -> 192, 192 -> 384; tune_conv_h200.json). BLOCK_K divides CIN
    where 64 or 32 does, else covers it (48 as 64, masked)."""
    block_n = _pow2_at_least(out_channels) if out_channels <= 256 else 128
    block_m = 16384 // block_n if out_channels <= 256 else 64
    block_k = next((k for k in (64, 32) if in_channels % k == 0),
                   min(64, _pow2_at_least(in_channels)))
    warps = 8 if block_m == block_n == 128 else 4
    return block_m, block_n, block_k, warps, 4 if block_k == 32 else 3


def _conv_impl(x: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, kernel_size: int,
               stride: int, config, wrap: bool = True) -> torch.Tensor:
    """The conv kernel with tiles config = (BLOCK_M, BLOCK_N, BLOCK_K, warps, stages); wrap:
    see ``_launch``."""
    b, cin, h, w = x.shape
    cout = bias.numel()
    block_m, block_n, block_k, warps, stages = config
    oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1  # padding K // 2, odd K
    x = x.permute(0, 2, 3, 1).contiguous()  # no copy for channels-last input
    out = torch.empty(b, oh, ow, cout, device=x.device, dtype=x.dtype)
    pixels = b * oh * ow
    _launch(_conv_kernel, (triton.cdiv(pixels, block_m), triton.cdiv(cout, block_n)), x,
            table.to(x.dtype), bias, out, h, w, oh, ow, pixels, CIN=cin, COUT=cout,
            K=kernel_size, STRIDE=stride, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
            STAGES=stages, PRECISION='ieee' if x.dtype == torch.float32 else 'tf32',
            num_warps=warps, wrap=wrap)
    return out.permute(0, 3, 1, 2)


def _conv(x: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, kernel_size: int,
          stride: int) -> torch.Tensor:
    return _conv_impl(x, table, bias, kernel_size, stride, conv_config(x.shape[1], bias.numel()))


_conv_op = _custom_op('conv', _conv)


def conv(x: torch.Tensor, table: torch.Tensor, bias: torch.Tensor, kernel_size: int,
         stride: int) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride, padding=K // 2) in the Triton kernel: the
    downsamplers' 3x3 stride-2 convs with their bias added in the same pass (inductor adds a
    conv's bias in a kernel of its own).

    x (B, CIN, H, W) (channels-last avoids a copy); table (K*K*CIN, COUT) = ``conv_table(weight)``
    of a (COUT, CIN, K, K) weight, odd K; bias (COUT,). Returns (B, COUT, ceil(H / stride),
    ceil(W / stride)) in x's dtype, channels-last; the products in x's dtype, summed in fp32.
    """
    cin, cout = x.shape[1], bias.numel()
    if kernel_size % 2 == 0 or tuple(table.shape) != (kernel_size**2 * cin, cout):
        raise ValueError(f'conv needs conv_table of a ({cout}, {cin}, K, K) weight with odd '
                         f'K = {kernel_size}: a ({kernel_size**2 * cin}, {cout}) table, got '
                         f'{tuple(table.shape)}')
    args = (x, table.contiguous(), bias.contiguous(), kernel_size, stride)
    return (_conv if INTERPRET else _conv_op)(*args)
