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

Bytes times the element size, divided by the HBM bandwidth, give the floor time. Usage:

    python tools/analysis/vmisa_traffic.py --arch xs --batch 256 --size 224 --dtype bf16 \
        [--bandwidth-tbs 3.35] [--json]
"""
import argparse
import json
import math

from mmvminet.models.vminet import VMINet

BYTES = {'fp32': 4, 'bf16': 2, 'fp16': 2}
EAGER_C, EAGER_D = 7, 18  # the op table above
FLOOR_C = 3


def stage_traffic(arch: str, batch: int, size, dtype: str, bandwidth_tbs: float):
    """Per-stage rows: shape, blocks, eager and floor bytes per block, floor time per block (us)."""
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
        rows.append(dict(stage=i, channels=channels, hidden=hidden, map=[sh, sw], blocks=depth,
                         eager_bytes=eager, floor_bytes=floor,
                         floor_us=floor / (bandwidth_tbs * 1e12) * 1e6,
                         eager_over_floor=eager / floor))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='xs', help='ti, xs, s or b')
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--size', type=int, nargs='+', default=[224], metavar='H [W]')
    parser.add_argument('--dtype', default='bf16', help='fp32, bf16 or fp16')
    parser.add_argument('--bandwidth-tbs', type=float, default=3.35,
                        help='HBM bandwidth in TB/s (H100 SXM HBM3: 3.35)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    size = tuple(args.size) * 2 if len(args.size) == 1 else tuple(args.size[:2])
    try:
        rows = stage_traffic(args.arch, args.batch, size, args.dtype, args.bandwidth_tbs)
    except ValueError as error:
        parser.error(str(error))
    total_floor = sum(r['floor_us'] * r['blocks'] for r in rows)
    total_eager = sum(r['eager_bytes'] * r['blocks'] for r in rows)
    if args.json:
        print(json.dumps(dict(vars(args), stages=rows, all_blocks_floor_us=total_floor,
                              all_blocks_eager_bytes=total_eager)))
        return rows
    print(f'VMINet-{args.arch.upper()} VMI-SA blocks, batch {args.batch}, {size[0]}x{size[1]}, '
          f'{args.dtype}, HBM {args.bandwidth_tbs} TB/s')
    print('stage  C    D    map      blocks  eager MB/block  floor MB/block  floor us/block  '
          'eager/floor')
    for r in rows:
        print(f'{r["stage"]:>5}  {r["channels"]:<4} {r["hidden"]:<4} '
              f'{r["map"][0]}x{r["map"][1]:<6} {r["blocks"]:>6}  {r["eager_bytes"] / 1e6:>14.1f}  '
              f'{r["floor_bytes"] / 1e6:>14.1f}  {r["floor_us"]:>14.1f}  '
              f'{r["eager_over_floor"]:>11.1f}')
    print(f'all blocks: floor {total_floor:.0f} us, eager traffic {total_eager / 1e9:.2f} GB '
          f'({total_eager / (args.bandwidth_tbs * 1e12) * 1e6:.0f} us at that bandwidth)')
    return rows


if __name__ == '__main__':
    main()
