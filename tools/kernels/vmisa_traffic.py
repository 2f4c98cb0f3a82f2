"""HBM traffic of VMI-SA blocks: the unfused PyTorch path against a fused kernel's floor.

For one block on a (B, C, H, W) map with D = r * C and N = B * H * W tokens, counting each tensor
a kernel reads or writes once (weights, alphas, the mask and the (B, D) context are tiny):

    eager (inference: BN folded, Q/K merged)
        dwconv 7x7          read x, write u                 2 N C
        qk_proj 1x1         read u, write q, k              N C + 2 N D
        relu6(q)            read q, write                   2 N D
        relu6(q) * k        read 2, write 1                 3 N D
        context (Eq. 10)    (qk * w) then sum over tokens   3 N D
        w_ctx c + w_loc qk  two ops                         5 N D
        relu6(y)                                            2 N D
        out_proj 1x1        read y, write                   N D + N C
        x + ...             read 2, write 1                 3 N C
        total                                               N (7 C + 18 D)

    floor of a fused block: the context is a sum over all tokens, so the output needs two passes
    over x: pass 1 reads x and reduces the context (Q*K recomputed on chip, never written), pass
    2 reads x again and writes the output:                 3 N C

Bytes times the element size, divided by the HBM bandwidth, give the memory floor. That
two-pass kernel also has a compute floor (FLOPs, multiply-adds counted as 2):

    tensor cores    Q, K in pass 1 (2 N C 2D), again in pass 2 (2 N C 2D), W3 (2 N D C)  10 N C D
    CUDA cores      the 7x7 depthwise conv, computed in both passes: 2 x 2 x 49 N C      196 N C

divided by the peak rates (--tensor-tflops, --vector-tflops). The block's roofline floor is the
largest of the three. For D = 2C the tensor-core work is 20 N C^2 against 3 N C elements moved,
and the depthwise conv 196 N C on CUDA cores: at H100 rates every VMINet-XS stage is
compute-bound, on CUDA cores at C = 48 and 96, on tensor cores from C = 192. Usage:

    python tools/kernels/vmisa_traffic.py --arch xs --batch 256 --size 224 --dtype bf16 \
        [--bandwidth-tbs 3.35] [--tensor-tflops 989] [--vector-tflops 67] [--json] \
        [--measured docs/benchmarks/vmisa_blocks_h100.json]

--measured reads a tools/kernels/benchmark_vmisa.py result (same arch, batch, size, dtype) and
sets each stage's best block time against these floors, with that run's copy bandwidth as the
HBM bandwidth.
"""
import argparse
import json
import math
from pathlib import Path

from mmvminet.models.vminet import VMINet

BYTES = {'fp32': 4, 'bf16': 2, 'fp16': 2}
EAGER_C, EAGER_D = 7, 18  # the op table above
FLOOR_C = 3
TENSOR_FLOPS_CD = 10  # x N C D, the two-pass kernel's projections
VECTOR_FLOPS_C = 196  # x N C, its depthwise conv computed in both passes


def stage_traffic(arch: str, batch: int, size, dtype: str, bandwidth_tbs: float,
                  tensor_tflops: float = 989., vector_tflops: float = 67.):
    """Per-stage rows: shape, blocks, eager and floor bytes per block, memory floor time per
    block (us), FLOPs and compute floor of the two-pass kernel, roofline floor (us)."""
    if arch not in VMINet.arch_settings:
        raise ValueError(f'unknown arch {arch!r}; valid: {", ".join(VMINet.arch_settings)}')
    settings = VMINet.arch_settings[arch]
    if dtype not in BYTES:
        raise ValueError(f'unknown dtype {dtype!r}; valid: {", ".join(BYTES)}')
    h, w = size
    rows = []
    for i, depth in enumerate(VMINet.default_depths):
        channels = settings['base_dim'] * 2**i
        hidden = settings['ratio'] * channels
        stride = 2**(i + 2)
        # stem (stride 4) and each downsampler: 3x3 stride-2 convs with padding 1
        sh = math.ceil(h / stride)
        sw = math.ceil(w / stride)
        tokens = batch * sh * sw
        eager = tokens * (EAGER_C * channels + EAGER_D * hidden) * BYTES[dtype]
        floor = tokens * FLOOR_C * channels * BYTES[dtype]
        row = dict(stage=i, channels=channels, hidden=hidden, map=[sh, sw], blocks=depth,
                   eager_bytes=eager, floor_bytes=floor,
                   floor_us=floor / (bandwidth_tbs * 1e12) * 1e6, eager_over_floor=eager / floor,
                   tensor_flops=TENSOR_FLOPS_CD * tokens * channels * hidden,
                   vector_flops=VECTOR_FLOPS_C * tokens * channels)
        row['compute_floor_us'] = max(row['tensor_flops'] / tensor_tflops,
                                      row['vector_flops'] / vector_tflops) / 1e6
        row['roofline_us'] = max(row['floor_us'], row['compute_floor_us'])
        rows.append(row)
    return rows


MEASURED_MODES = ('eager', 'compile', 'triton', 'compile_triton')


def add_measured(rows, result: dict, path: str):
    """Each stage's best block time of a benchmark_vmisa.py result (read from path) and its
    ratio to the floors."""
    measured = {r['stage']: r for r in result['rows']}
    for row in rows:
        m = measured.get(row['stage'])
        if m is None or m['channels'] != row['channels'] or m['map'] != row['map']:
            raise ValueError(f'{path}: stage {row["stage"]} was measured on another shape '
                             f'(arch, size or batch differ)')
        mode = min(MEASURED_MODES, key=lambda k: m[f'{k}_us'])
        row.update(best_mode=mode, best_us=m[f'{mode}_us'],
                   best_over_floor=m[f'{mode}_us'] / row['floor_us'],
                   best_over_roofline=m[f'{mode}_us'] / row['roofline_us'])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='xs', help='ti, xs, s or b')
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--size', type=int, nargs='+', default=[224], metavar='H [W]')
    parser.add_argument('--dtype', default='bf16', help='fp32, bf16 or fp16')
    parser.add_argument('--bandwidth-tbs', type=float, default=3.35,
                        help='HBM bandwidth in TB/s (H100 SXM HBM3: 3.35)')
    parser.add_argument('--tensor-tflops', type=float, default=989.,
                        help='dense bf16/fp16 tensor-core peak (H100 SXM: 989)')
    parser.add_argument('--vector-tflops', type=float, default=67.,
                        help='fp32 CUDA-core peak (H100 SXM: 67)')
    parser.add_argument('--json', action='store_true')
    parser.add_argument('--measured', help='a benchmark_vmisa.py JSON to compare with')
    args = parser.parse_args(argv)
    size = tuple(args.size) * 2 if len(args.size) == 1 else tuple(args.size[:2])
    try:
        if args.measured:
            if not Path(args.measured).is_file():
                raise ValueError(f'--measured: no such file {args.measured}')
            result = json.loads(Path(args.measured).read_text())
            args.bandwidth_tbs = result['copy_bandwidth_tbs']
        rows = stage_traffic(args.arch, args.batch, size, args.dtype, args.bandwidth_tbs,
                             args.tensor_tflops, args.vector_tflops)
        if args.measured:
            add_measured(rows, result, args.measured)
    except ValueError as error:
        parser.error(str(error))
    total_floor = sum(r['floor_us'] * r['blocks'] for r in rows)
    total_roofline = sum(r['roofline_us'] * r['blocks'] for r in rows)
    total_eager = sum(r['eager_bytes'] * r['blocks'] for r in rows)
    if args.json:
        print(json.dumps(dict(vars(args), stages=rows, all_blocks_floor_us=total_floor,
                              all_blocks_roofline_us=total_roofline,
                              all_blocks_eager_bytes=total_eager)))
        return rows
    print(f'VMINet-{args.arch.upper()} VMI-SA blocks, batch {args.batch}, {size[0]}x{size[1]}, '
          f'{args.dtype}, HBM {args.bandwidth_tbs:.2f} TB/s, tensor {args.tensor_tflops} TFLOPS, '
          f'vector {args.vector_tflops} TFLOPS')
    print('stage  C    D    map      blocks  eager MB/block  floor MB/block  floor us/block  '
          'eager/floor  compute us/block  roofline us/block')
    for r in rows:
        print(f'{r["stage"]:>5}  {r["channels"]:<4} {r["hidden"]:<4} '
              f'{r["map"][0]}x{r["map"][1]:<6} {r["blocks"]:>6}  {r["eager_bytes"] / 1e6:>14.1f}  '
              f'{r["floor_bytes"] / 1e6:>14.1f}  {r["floor_us"]:>14.1f}  '
              f'{r["eager_over_floor"]:>11.1f}  {r["compute_floor_us"]:>16.1f}  '
              f'{r["roofline_us"]:>17.1f}')
    if args.measured:
        print(f'measured ({args.measured}, HBM = its copy bandwidth):')
        print('stage  best mode        best us/block  best/floor  best/roofline')
        for r in rows:
            print(f'{r["stage"]:>5}  {r["best_mode"]:<15} {r["best_us"]:>13.1f}  '
                  f'{r["best_over_floor"]:>10.1f}  {r["best_over_roofline"]:>13.1f}')
    print(f'all blocks: memory floor {total_floor:.0f} us, roofline floor {total_roofline:.0f} us, '
          f'eager traffic {total_eager / 1e9:.2f} GB '
          f'({total_eager / (args.bandwidth_tbs * 1e12) * 1e6:.0f} us at that bandwidth)')
    return rows


if __name__ == '__main__':
    main()
