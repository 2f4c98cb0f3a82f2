"""Sweep the tile sizes of the Triton kernels (vmisa_triton.py) on each stage's map, on the GPU.

    python tools/kernels/tune_vmisa_kernels.py [--arch xs] [--batch 256] [--img-size 224]
        [--dtype bf16] [--stages 0,1,2,3] [--what stem,conv,dwconv,fused,gemm,split]
        [--out tune.json]

Times
  stem        the stem's conv + ReLU6 on a channels-last fp32 batch under autocast: cuDNN
              (NHWC, NCHW) and the Triton kernel at every (BLOCK_P, warps) of a grid and at its
              default (``STEM_TILE``);
and for each stage of the arch (the map of benchmark_vmisa.py's block)
  conv        the stage's downsampler (3x3 stride-2 conv + bias, BN folded) on its channels-last
              input: cuDNN, cuDNN with the bias add as inductor compiles them with freezing (as
              in the frozen network), and the Triton conv kernel at every (BLOCK_M, BLOCK_N,
              BLOCK_K, warps, stages) of a grid and at its default tiles;
  dwconv      the depthwise 7x7 conv (BN folded) as cuDNN channels-last (cudnn.benchmark on),
              cuDNN on contiguous NCHW, PyTorch's own kernel (cuDNN off) in both layouts, and
              the Triton kernel at every (ROWS, STRIP, BLOCK_C, warps) of a grid and at its
              default tiles;
  fused       the two fused VMI-SA kernels after the depthwise conv at every
              (BLOCK_T, BLOCK_D, warps, stages, programs per SM) of a grid;
  gemm        the GEMM pair after the depthwise conv: pass 1's (BLOCK_M, BLOCK_N, BLOCK_K,
              warps, stages) over a grid with pass 2 at its default, then pass 2's (its BLOCK_N:
              the columns of C per program, all of C or a part);
  split       (not a sweep) the kernels after the depthwise conv at the model's tiles, kernel
              by kernel (torch.profiler), beside yardsticks: cuBLAS GEMMs of the GEMM pair's
              two shapes without the element-wise work the passes fuse (pass 1: M x C times
              C x 2D, M = B*H*W tokens; pass 2: M x D times D x C) and a copy of an M x D tensor.
Each row has its median GPU time (CUDA events around the replay of a CUDA graph of the calls:
no Python launch overhead), its bandwidth for the stem, the conv and the dwconv (input +
output bytes) and its max abs difference to the PyTorch path. The winners are what ``STEM_TILE``,
``conv_config``, ``dwconv_config``, ``_blocks`` and ``gemm_blocks`` in vmisa_triton.py
return; the JSON is written after the stem and every stage. Each tile is a fresh Triton build
(~seconds): tiles past the stem's or a stage's share of --max-seconds are skipped.
"""
import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmvminet.models import VMINet, vmisa_triton  # noqa: E402
from tools.analysis.benchmark import (DTYPES, environment, profile_steps,  # noqa: E402
                                      seconds_per_call, write_json)
from tools.kernels.benchmark_vmisa import (add_block_arguments, copy_bandwidth,  # noqa: E402
                                            stage_input)


def gpu_seconds_per_call(fn, args) -> float:
    """seconds_per_call of the GPU time alone: ``iters`` calls captured once in a CUDA graph
    and replayed, so that Python's launch overhead (direct Triton launches, the eager custom
    ops) is not counted, as in a compiled model whose launches run ahead of the GPU."""
    for _ in range(args.warmup):  # builds the kernels outside the capture
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(args.iters):
            fn()
    replays = argparse.Namespace(**dict(vars(args), warmup=1, iters=1))
    seconds = seconds_per_call(graph.replay, replays) / args.iters
    del graph
    return seconds


def pow2_caps(values, limit):
    """values capped at the next power of two of limit, without repeats."""
    cap = vmisa_triton.triton.next_power_of_2(limit)
    return sorted({min(v, cap) for v in values})


def triton_rows(kind, run, grid, default, reference, args):
    """A Triton kernel's rows: run(config) at every config of grid until the deadline (its GPU
    time and max abs difference to reference), then default(), the custom op at the tiles the
    model uses."""
    rows = []
    for config in grid:
        if time.monotonic() > args.deadline:
            break
        out = run(config)
        us = gpu_seconds_per_call(lambda: run(config), args) * 1e6
        rows.append(dict(kind=kind, impl='triton', config=list(config), us=us,
                         max_abs_diff=(out.float() - reference.float()).abs().max().item()))
    rows.append(dict(kind=kind, impl='triton', config='default',
                     us=gpu_seconds_per_call(default, args) * 1e6))
    return rows


def with_bandwidth(rows, moved: int):
    """rows with their GB/s for ``moved`` bytes per call."""
    for row in rows:
        row['gbs'] = moved / row['us'] / 1e3
    return rows


def dwconv_rows(block, x, args):
    conv = block.dwconv.conv
    weight, bias = conv.weight, conv.bias
    element = x.element_size()
    moved = 2 * x.numel() * element
    with torch.inference_mode():
        reference = conv(x)
        x_nchw = x.contiguous()
        baselines = {
            'cudnn_channels_last': lambda: conv(x),
            'cudnn_nchw': lambda: conv(x_nchw),
        }
        rows = []
        for name, fn in baselines.items():
            rows.append(dict(kind='dwconv', impl=name, us=gpu_seconds_per_call(fn, args) * 1e6))
        with torch.backends.cudnn.flags(enabled=False):
            for name, inp in (('native_channels_last', x), ('native_nchw', x_nchw)):
                us = gpu_seconds_per_call(lambda: F.conv2d(inp, weight, bias, padding=3,
                                                       groups=inp.shape[1]), args) * 1e6
                rows.append(dict(kind='dwconv', impl=name, us=us))
        b, c, h, w = x.shape
        taps = vmisa_triton.tap_weights(weight)
        # a lane keeps K rows of STRIP accumulators: strips of 7 or 14 columns (wider ones
        # spill registers); row tiles of the map's height or half of it
        block_c = vmisa_triton.dwconv_config(c, h, w)[2]
        grid = [(rows, strip, block_c, warps) for rows, strip, warps in
                itertools.product(sorted({h, -(-h // 2)}), sorted({min(s, w) for s in (7, 14)}),
                                  (1, 2))]
        rows += triton_rows(
            'dwconv', lambda config: vmisa_triton._depthwise_conv_impl(x, taps, bias, config,
                                                                       wrap=False),
            grid, lambda: vmisa_triton.depthwise_conv(x, taps, bias), reference, args)
    return with_bandwidth(rows, moved)


def stem_rows(args):
    """The stem's conv + ReLU6 (BN folded) on a channels-last fp32 batch, as the benchmark feeds
    it: cuDNN under autocast (NHWC and NCHW) and the Triton kernel, which reads the fp32 input
    itself, at every (BLOCK_P, warps) of a grid and at its default."""
    model = VMINet(args.arch).eval()
    model.stem[0].fuse()
    conv = model.stem[0].conv.to('cuda')
    dtype = DTYPES[args.dtype]
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device='cuda')
    x = x.contiguous(memory_format=torch.channels_last)
    table = vmisa_triton.stem_table(conv.weight)
    k, stride = conv.kernel_size[0], conv.stride[0]
    rows = []
    with torch.inference_mode(), torch.autocast('cuda', dtype):
        reference = F.relu6(conv(x))
        x_nchw = x.contiguous()
        for name, inp in (('cudnn_channels_last', x), ('cudnn_nchw', x_nchw)):
            rows.append(dict(kind='stem', impl=name, us=gpu_seconds_per_call(
                lambda: F.relu6(conv(inp)), args) * 1e6))
        rows += triton_rows(
            'stem', lambda tile: vmisa_triton._stem_conv_impl(x, table, conv.bias, k, stride,
                                                              dtype, tile, wrap=False),
            itertools.product((32, 64, 128, 256), (1, 2, 4, 8)),
            lambda: vmisa_triton.stem_conv(x, table, conv.bias, k, stride, dtype), reference,
            args)
    moved = x.numel() * x.element_size() + reference.numel() * reference.element_size()
    return with_bandwidth(rows, moved)


def tile_row(block, x, u, reference, blocks, args, **fields) -> dict:
    """One row of a tile sweep of the kernels after the depthwise conv: their GPU time at
    tiles ``blocks`` and the max abs difference to the PyTorch path, or the error (e.g. out
    of shared memory for this tile). fields: the row's kind, config, ..."""
    try:
        out = block.fused_forward(x, u, blocks)
    except Exception as error:
        return dict(fields, error=str(error)[:200])
    us = gpu_seconds_per_call(lambda: block.fused_forward(x, u, blocks), args) * 1e6
    return dict(fields, us=us,
                max_abs_diff=(out.float() - reference.float()).abs().max().item())


def fused_rows(block, x, u, reference, args):
    """The fused pair at tiles (BLOCK_T, BLOCK_D, warps, stages, programs per SM)."""
    rows = []
    for config in itertools.product((32, 64, 128), (32, 64), (4, 8), (2, 3), (1, 2)):
        if time.monotonic() > args.deadline:
            break
        rows.append(tile_row(block, x, u, reference, config, args, kind='fused',
                             config=list(config)))
    rows.append(dict(kind='fused', config='default',
                     us=gpu_seconds_per_call(lambda: block.fused_forward(x, u), args) * 1e6))
    return rows


def gemm_rows(block, x, u, reference, args):
    """The GEMM pair: pass 1's tiles swept with pass 2 at its default, then pass 2's with
    pass 1 at the best found; each row times the whole pair."""
    b, c, h, w = x.shape
    hidden = block.out_proj.in_channels
    default = vmisa_triton.gemm_blocks(c, hidden, h * w)
    if default is None:
        return [dict(kind='gemm', config='default', error=f'no GEMM tiles for C={c}, D={hidden}')]
    rows = []

    def timed(blocks, sweep):
        rows.append(tile_row(block, x, u, reference, blocks, args, kind='gemm', sweep=sweep,
                             config=[list(p) for p in blocks]))
        return rows[-1].get('us', float('inf'))

    def tiles(token_tiles, columns, k_dim):
        return [(m, n, k, warps, stages) for m in token_tiles
                for n in columns if m * n <= 128 * 384
                for k in (32, 64) if k_dim % k == 0
                for warps, stages in ((4, 2), (4, 3), (8, 3))]

    # pass 2's programs take BLOCK_N columns in CHUNK-wide accumulators: all of C, or a part
    pass2_columns = sorted({n for n in (c, c // 2, c // 3, 64, 128) if n % 16 == 0 and c % n == 0})
    halfway = time.monotonic() + (args.deadline - time.monotonic()) / 2
    best = (timed(default, 'default'), default[0])
    # pass 1's tiles may span up to 16 images (its per-image sums are a dot), pass 2's 3
    for first in tiles((64, 128), [n for n in (32, 64, 128) if hidden % n == 0], c):
        if time.monotonic() > halfway:
            break
        best = min(best, (timed((first, default[1]), 'pass1'), first))
    for second in tiles(pow2_caps((64, 128), max(16, h * w)), pass2_columns, hidden):
        if time.monotonic() > args.deadline:
            break
        timed((best[1], second), 'pass2')
    return rows


def split_rows(block, x, u, args):
    """The kernels after the depthwise conv at the model's tiles, each with its GPU time per
    call (rows of impl = the kernel's name; the eager call's weight casts included, which a
    compiled model folds away), and the yardsticks of ``split`` in the module docstring."""
    rows = [dict(kind='split', impl=k['name'][:60], us=k['ms_per_step'] * 1e3,
                 calls=k['calls_per_step'])
            for k in profile_steps(lambda: block.fused_forward(x, u), args.iters, 'cuda')]
    b, c, h, w = x.shape
    tokens, hidden = b * h * w, block.out_proj.in_channels

    def operand(*shape):
        return torch.randn(*shape, device='cuda', dtype=u.dtype)

    yardsticks = {'cublas_pass1_shape': (operand(tokens, c), operand(c, 2 * hidden)),
                  'cublas_pass2_shape': (operand(tokens, hidden), operand(hidden, c))}
    for name, (left, right) in yardsticks.items():
        rows.append(dict(kind='split', impl=name,
                         us=gpu_seconds_per_call(lambda: left @ right, args) * 1e6))
    a = yardsticks['cublas_pass2_shape'][0]  # an M x D tensor
    rows.append(dict(kind='split', impl='copy_MxD',
                     us=gpu_seconds_per_call(lambda: a.clone(), args) * 1e6))
    return rows


def conv_rows(stage: int, args):
    """The stage's downsampler (BN folded) on a channels-last input of its size, in --dtype."""
    down = VMINet(args.arch).eval().stages[stage].downsample
    down.fuse()
    dtype = DTYPES[args.dtype]
    conv = down.conv.to('cuda', dtype).to(memory_format=torch.channels_last)
    cin, cout = conv.in_channels, conv.out_channels
    size = -(-args.img_size // 2**(stage + 1))
    x = torch.randn(args.batch, cin, size, size, device='cuda', dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    table = vmisa_triton.conv_table(conv.weight)
    k, stride = conv.kernel_size[0], conv.stride[0]
    with torch.inference_mode():
        reference = conv(x)
        rows = [dict(kind='conv', impl='cudnn_channels_last',
                     us=gpu_seconds_per_call(lambda: conv(x), args) * 1e6)]
        with torch._inductor.config.patch(freezing=True):
            compiled = torch.compile(conv)
            compiled(x)  # compiles here, with freezing
        rows.append(dict(kind='conv', impl='inductor_frozen',
                         us=gpu_seconds_per_call(lambda: compiled(x), args) * 1e6))
        columns = [n for n in (64, 128, 256) if n <= max(64, vmisa_triton._pow2_at_least(cout))]
        # 4 warps up to 128 x 128 outputs, 8 from there; the pipeline's buffers in 160 KB
        grid = [(m, n, depth, warps, stages) for m, n, depth, warps, stages in itertools.product(
                    (64, 128, 256), columns, (32, 64, 128), (4, 8), (3, 4))
                if depth <= 2 * cin and m * n <= 128 * 256
                and (m * n <= 16384 if warps == 4 else m * n >= 16384)
                and depth * (m + n) * stages * 2 <= 160000]
        rows += triton_rows(
            'conv', lambda config: vmisa_triton._conv_impl(x, table, conv.bias, k, stride, config,
                                                           wrap=False),
            grid, lambda: vmisa_triton.conv(x, table, conv.bias, k, stride), reference, args)
    moved = x.numel() * x.element_size() + reference.numel() * reference.element_size()
    return with_bandwidth(rows, moved)


def print_rows(title, rows, kinds):
    """The 6 fastest rows of each kind, then the baselines and the defaults."""
    print(title)
    for kind in kinds:
        timed = sorted((r for r in rows if r['kind'] == kind and 'us' in r),
                       key=lambda r: r['us'])
        for r in timed[:6] + [r for r in timed[6:] if r.get('impl', 'triton') != 'triton'
                              or str(r.get('config')).startswith('default')]:
            extra = f"{r['gbs']:.0f} GB/s" if 'gbs' in r else ''
            print(f"  {kind:6s} {r.get('impl', ''):22s} {str(r.get('config', '')):22s} "
                  f"{r['us']:8.1f} us {extra} diff {r.get('max_abs_diff', 0):.3g}", flush=True)


WHAT = ('stem', 'conv', 'dwconv', 'fused', 'gemm', 'split')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_block_arguments(parser)
    parser.add_argument('--stages', default='0,1,2,3')
    parser.add_argument('--what', default='stem,conv,dwconv,fused,gemm',
                        help=f'comma-separated, of {",".join(WHAT)} (default: all but split)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--max-seconds', type=float, default=600)
    parser.add_argument('--out', default='tune_vmisa_kernels.json')
    args = parser.parse_args(argv)
    unknown = set(args.what.split(',')) - set(WHAT)
    if unknown:
        parser.error(f'--what: unknown {", ".join(sorted(unknown))}; valid: {",".join(WHAT)}')
    if not torch.cuda.is_available() or vmisa_triton.triton is None:
        parser.error('needs a CUDA device and Triton')
    args.device = 'cuda'
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.backends.cudnn.benchmark = True
    result = dict(env=environment(args), copy_bandwidth_tbs=copy_bandwidth(args) / 1e12,
                  stages=[])
    stages = [int(s) for s in args.stages.split(',')]
    parts = len(stages) + ('stem' in args.what)  # --max-seconds shared out
    if 'stem' in args.what:
        args.deadline = time.monotonic() + args.max_seconds / parts
        result['stem'] = stem_rows(args)
        print_rows('stem', result['stem'], ('stem', ))
        write_json(args.out, result)
    for stage in stages:
        args.deadline = time.monotonic() + args.max_seconds / parts
        block, x = stage_input(stage, args)
        channels, size = x.shape[1], x.shape[2]
        rows = conv_rows(stage, args) if 'conv' in args.what else []
        if 'dwconv' in args.what:
            rows += dwconv_rows(block, x, args)
        with torch.inference_mode():
            u, reference = block.dwconv(x), block(x)
            if 'fused' in args.what:
                rows += fused_rows(block, x, u, reference, args)
            if 'gemm' in args.what:
                rows += gemm_rows(block, x, u, reference, args)
            if 'split' in args.what:
                rows += split_rows(block, x, u, args)
        result['stages'].append(dict(stage=stage, channels=channels, map=[size, size], rows=rows))
        print_rows(f'stage {stage}: C={channels}, {size}x{size}', rows,
                   ('conv', 'dwconv', 'fused', 'gemm', 'split'))
        write_json(args.out, result)
    return result


if __name__ == '__main__':
    main()
