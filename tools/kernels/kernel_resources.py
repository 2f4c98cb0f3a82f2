"""Registers, spills and instruction mix of the depthwise-conv Triton kernel, on any machine.

    python tools/kernels/kernel_resources.py [--arch 90] [--dtype bf16]
        [--maps 56:48,28:96,14:192,7:384] [--tiles ROWS,STRIP,BLOCK_C,WARPS]
        [--batch 256] [--sms 132] [--out FILE.json]

For each map W:C (default: VMINet-XS's four stages) the kernel is compiled for that dtype at
``dwconv_config``'s tiles (or --tiles) for sm_<arch>a by Triton's own ptxas, without a GPU.
Printed per map: ptxas's registers per thread and spill bytes, the SASS size and its most
frequent opcodes (cuobjdump beside ptxas). The loop over input rows is not unrolled, so the
SASS holds one input row: a lane (one image and channel) loads the STRIP + K - 1 input columns
of its row and adds each, at K column shifts, into K rows of STRIP accumulators: FFMA =
K^2 STRIP. Spills, shared-memory traffic (LDS, STS: layout conversions) or loads that rival the
FFMAs are what to look for. Also printed: the warps an SM can hold at those registers (64K
registers per SM, 64 warps at most) and the waves the launch grid of a square W x W map at
--batch takes on --sms SMs (132 on the H100 SXM and H200): a second, part-filled wave leaves
SMs idle, one reason why a tile with fewer registers can time slower. The ptxas is the
installed Triton's; a GPU machine with another Triton version may allocate otherwise (Triton
3.6 and 3.8 differ here).
"""
import argparse
import collections
import json
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmvminet.models import vmisa_triton  # noqa: E402

DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}
POINTER = {torch.bfloat16: '*bf16', torch.float16: '*fp16', torch.float32: '*fp32'}
OPCODE = re.compile(r'/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', type=int, default=90, help='compute capability x 10 (90: H100)')
    parser.add_argument('--dtype', default='bf16', choices=list(DTYPES))
    parser.add_argument('--maps', default='56:48,28:96,14:192,7:384',
                        help='comma-separated W:C (map width and channels)')
    parser.add_argument('--tiles', default=None,
                        help="ROWS,STRIP,BLOCK_C,WARPS for every map (default: dwconv_config's)")
    parser.add_argument('--kernel-size', type=int, default=7)
    parser.add_argument('--batch', type=int, default=256, help='images, for the launch grid')
    parser.add_argument('--sms', type=int, default=132, help='SMs of the GPU (132: H100, H200)')
    parser.add_argument('--out', default=None, help='also write the rows as JSON')
    args = parser.parse_args(argv)
    if vmisa_triton.triton is None:
        parser.error('needs Triton (it ships with the CUDA builds of torch)')
    try:
        args.maps = [tuple(int(v) for v in m.split(':')) for m in args.maps.split(',')]
        args.tiles = tuple(int(v) for v in args.tiles.split(',')) if args.tiles else None
    except ValueError:
        parser.error('--maps takes W:C pairs, --tiles four integers')
    if any(len(m) != 2 for m in args.maps) or (args.tiles and len(args.tiles) != 4):
        parser.error('--maps takes W:C pairs, --tiles four integers')
    return args


def compile_kernel(width: int, channels: int, dtype: torch.dtype, tiles, arch: int,
                   kernel_size: int = 7):
    """The depthwise kernel (``_dwconv_kernel``) compiled for sm_<arch>a: its PTX text."""
    triton = vmisa_triton.triton
    from triton.backends.compiler import GPUTarget
    rows, strip, block_c, warps = tiles
    signature = {'x_ptr': POINTER[dtype], 'w_ptr': '*fp32', 'b_ptr': '*fp32',
                 'out_ptr': POINTER[dtype], 'B': 'i32', 'H': 'i32', 'W': 'constexpr',
                 'C': 'constexpr', 'K': 'constexpr', 'ROWS': 'constexpr', 'STRIP': 'constexpr',
                 'IMAGES': 'constexpr', 'BLOCK_C': 'constexpr'}
    constants = dict(W=width, C=channels, K=kernel_size, ROWS=rows, STRIP=strip,
                     IMAGES=vmisa_triton.dwconv_images(tiles), BLOCK_C=block_c)
    # the 16-byte pointer alignment Triton assumes at launch for torch's allocations
    aligned = {(i, ): [['tt.divisibility', 16]] for i in range(4)}
    source = triton.compiler.ASTSource(fn=vmisa_triton._dwconv_kernel, signature=signature,
                                       constexprs=constants, attrs=aligned)
    compiled = triton.compile(source, target=GPUTarget('cuda', arch, 32),
                              options=dict(num_warps=warps))
    return compiled.asm['ptx']


def resources(ptx: str, arch: int) -> dict:
    """ptxas -v's registers and spill bytes and the SASS opcode counts of one PTX kernel."""
    from triton.backends.nvidia.compiler import get_ptxas
    ptxas = Path(get_ptxas(arch).path)
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = Path(tmp) / 'kernel.ptx', Path(tmp) / 'kernel.cubin'
        src.write_text(ptx)
        info = subprocess.run([str(ptxas), f'-arch=sm_{arch}a', '-v', str(src), '-o', str(cubin)],
                              capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([str(ptxas.parent / 'cuobjdump'), '-sass', str(cubin)],
                              capture_output=True, text=True, check=True).stdout
    registers = re.search(r'Used (\d+) registers', info)
    spills = [int(v) for v in re.findall(r'(\d+) bytes spill (?:stores|loads)', info)]
    opcodes = collections.Counter(OPCODE.findall(sass))
    return dict(registers=int(registers.group(1)) if registers else None,
                spill_bytes=sum(spills), sass_instructions=sum(opcodes.values()),
                opcodes=dict(opcodes.most_common()))


def occupancy(registers: int, warps: int, programs: int, sms: int) -> dict:
    """The warps an SM holds for programs of ``warps`` warps at ``registers`` per thread
    (allocated per warp in units of 256; 64K per SM; at most 64 warps and 32 programs), and
    the waves ``programs`` take on ``sms`` SMs."""
    per_warp = -(-registers * 32 // 256) * 256
    per_sm = min(65536 // per_warp // warps, 64 // warps, 32)
    return dict(programs=programs, warps_per_sm=per_sm * warps,
                waves=programs / (per_sm * sms) if per_sm else float('inf'))


def main(argv=None):
    args = parse_args(argv)
    dtype = DTYPES[args.dtype]
    rows = []
    for width, channels in args.maps:
        tiles = args.tiles or vmisa_triton.dwconv_config(channels, width, width)
        ptx = compile_kernel(width, channels, dtype, tiles, args.arch, args.kernel_size)
        name = vmisa_triton._dwconv_kernel.__name__
        row = dict(width=width, channels=channels, dtype=args.dtype, kernel=name,
                   tiles=list(tiles), arch=f'sm_{args.arch}a', **resources(ptx, args.arch))
        programs = math.prod(vmisa_triton.dwconv_grid(args.batch, channels, width, width, tiles))
        row.update(occupancy(row['registers'], tiles[3], programs, args.sms))
        rows.append(row)
        top = ', '.join(f'{op} {n}' for op, n in list(row['opcodes'].items())[:8])
        print(f'W={width:4d} C={channels:4d} {name} tiles {tuple(tiles)}: {row["registers"]} '
              f'registers, {row["spill_bytes"]} spill bytes, {row["sass_instructions"]} SASS '
              f'instructions ({top}); {row["warps_per_sm"]} warps per SM, {programs} programs '
              f'in {row["waves"]:.2f} waves at batch {args.batch}', flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == '__main__':
    main()
