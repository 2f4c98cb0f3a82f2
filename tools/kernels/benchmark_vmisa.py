"""Time one VMI-SA block per stage on the GPU against its HBM-traffic floor.

    python tools/kernels/benchmark_vmisa.py [--arch xs] [--batch 256] [--img-size 224]
        [--dtype bf16] [--mask-kind lower_triangular] [--warmup 10] [--iters 50] [--repeats 5]
        [--out docs/benchmarks/vmisa_blocks_h100.json]

For each stage of the arch: one inference block (BN folded, Q/K merged; weights and input in
--dtype, channels_last) on the stage's (B, C, H, W) map at --img-size, timed as
  eager            the PyTorch path,
  compile          torch.compile of it (--compile-mode),
  triton           the Triton kernels: the depthwise conv and the pair after it that the model
                   picks for the stage's C (the fused pair up to FUSED_MAX_CHANNELS, the GEMM
                   pair above),
  compile_triton   torch.compile of that,
  dwconv           the depthwise conv alone (cuDNN),
  dwconv_triton    the depthwise conv alone in the Triton kernel.
The floor (tools/kernels/vmisa_traffic.py) is 3 N C elements (read x twice, write once), in
time at the bandwidth of a device-to-device copy measured in the same run; the depthwise conv
moves at least 2 N C (dwconv_gbs: the bandwidth that implies). Medians over
--repeats runs of --iters calls (CUDA events) after --warmup. Table on stdout, rows to --out.
"""
import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmvminet.models import VMISA, VMINet, vmisa_triton  # noqa: E402
from tools.kernels.vmisa_traffic import FLOOR_C, MEASURED_MODES  # noqa: E402
from tools.analysis.benchmark import (COMPILE_MODE, DTYPES, environment, fmt,  # noqa: E402
                                      seconds_per_call, write_json)


def copy_bandwidth(args) -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write)."""
    src = torch.empty(2**30, dtype=torch.uint8, device='cuda')
    dst = torch.empty_like(src)
    seconds = seconds_per_call(lambda: dst.copy_(src), args)
    del src, dst
    return 2 * 2**30 / seconds


def stage_block(channels: int, ratio: int, grid, mask_kind: str, dtype):
    """A random inference block: BN statistics drawn so that the fold does something."""
    block = VMISA(channels, ratio, grid, mask_kind).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.05)
        block.dwconv.norm.running_var.uniform_(0.5, 2)
    block.fuse()
    return block.to('cuda', dtype, memory_format=torch.channels_last)


def stage_input(stage: int, args):
    """A stage's random inference block and its (B, C, H, W) channels-last input at --img-size."""
    settings = VMINet.arch_settings[args.arch]
    channels = settings['base_dim'] * 2**stage
    stride = 2**(stage + 2)
    size = -(-args.img_size // stride)
    dtype = DTYPES[args.dtype]
    block = stage_block(channels, settings['ratio'], (-(-224 // stride), ) * 2, args.mask_kind,
                        dtype)
    x = torch.randn(args.batch, channels, size, size, device='cuda', dtype=dtype)
    return block, x.to(memory_format=torch.channels_last)


def add_block_arguments(parser):
    """The options that pick the stage blocks and their inputs (shared with the tile sweep)."""
    parser.add_argument('--arch', default='xs', choices=list(VMINet.arch_settings))
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--dtype', default='bf16', choices=list(DTYPES))
    parser.add_argument('--mask-kind', default='lower_triangular')


def measure_stage(stage: int, args, bandwidth: float):
    settings = VMINet.arch_settings[args.arch]
    block, x = stage_input(stage, args)
    channels, size, dtype = x.shape[1], x.shape[2], x.dtype
    row = dict(stage=stage, channels=channels, hidden=settings['ratio'] * channels,
               map=[size, size], tokens=args.batch * size * size)
    with torch.inference_mode():
        reference = block(x)
        compiled = torch.compile(block, mode=args.compile_mode, dynamic=False)
        row['eager_us'] = seconds_per_call(lambda: block(x), args) * 1e6
        row['compile_us'] = seconds_per_call(lambda: compiled(x), args) * 1e6
        row['dwconv_us'] = seconds_per_call(lambda: block.dwconv(x), args) * 1e6
        # the kernels at every width, not only where the model uses them

        def triton_block(inputs):
            u = vmisa_triton.depthwise_conv(inputs, taps, conv.bias)
            return block.fused_forward(inputs, u)

        conv = block.dwconv.conv
        taps = vmisa_triton.tap_weights(conv.weight)
        row['dwconv_triton_us'] = seconds_per_call(
            lambda: vmisa_triton.depthwise_conv(x, taps, conv.bias), args) * 1e6

        fused = triton_block(x)
        row['triton_us'] = seconds_per_call(lambda: triton_block(x), args) * 1e6
        compiled = torch.compile(triton_block, mode=args.compile_mode, dynamic=False)
        row['compile_triton_us'] = seconds_per_call(lambda: compiled(x), args) * 1e6
    row['triton_max_abs_diff'] = (fused.float() - reference.float()).abs().max().item()
    row['output_max_abs'] = reference.float().abs().max().item()
    element = torch.finfo(dtype).bits // 8
    row['floor_us'] = row['tokens'] * channels * FLOOR_C * element / bandwidth * 1e6
    best = min(row[f'{mode}_us'] for mode in MEASURED_MODES)
    row['best_over_floor'] = best / row['floor_us']
    row['dwconv_gbs'] = row['tokens'] * channels * 2 * element / row['dwconv_us'] / 1e3
    return row


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_block_arguments(parser)
    parser.add_argument('--compile-mode', default=COMPILE_MODE)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--out', default='vmisa_blocks.json')
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error('needs a CUDA device')
    args.device = 'cuda'
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.backends.cudnn.benchmark = True  # as benchmark.py: cuDNN picks its fastest conv
    bandwidth = copy_bandwidth(args)
    rows = [measure_stage(stage, args, bandwidth) for stage in range(4)]
    print(f'VMINet-{args.arch.upper()} VMI-SA blocks, batch {args.batch}, {args.img_size} px, '
          f'{args.dtype}, mask {args.mask_kind}; copy bandwidth {bandwidth / 1e12:.2f} TB/s')
    columns = ['stage', 'channels', 'map', 'eager_us', 'compile_us', 'triton_us',
               'compile_triton_us', 'dwconv_us', 'dwconv_triton_us', 'dwconv_gbs', 'floor_us',
               'best_over_floor',
               'triton_max_abs_diff']
    print(' | '.join(columns))
    for row in rows:
        print(' | '.join(fmt(row[c], 3 if c == 'triton_max_abs_diff' else 1) for c in columns))
    write_json(args.out, dict(env=environment(args), copy_bandwidth_tbs=bandwidth / 1e12,
                              rows=rows))
    return rows


if __name__ == '__main__':
    main()
