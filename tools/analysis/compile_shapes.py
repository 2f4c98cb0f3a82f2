"""The backbone's training step across keep-ratio detection shapes: eager against torch.compile
with static and with dynamic shapes, and how often each compiles.

    python tools/analysis/compile_shapes.py [--arch s] [--modes eager,static,dynamic]
        [--shapes 800x1216,800x1088,...] [--batch 2] [--steps 10] [--device cuda|cpu]
        [--out compile_shapes.json]

mmdet's detection pipeline resizes each image to fit 1333x800 keeping its aspect ratio and pads
the batch to a multiple of 32, so training batches come in many shapes. Static compilation
(``CompileBackboneHook``'s default) compiles, and with CUDA graphs records, once per new shape;
dynamic compilation is meant to compile once for all of them. For each mode this tool runs the
backbone's forward and backward (VMINet in train mode, fp16 autocast on CUDA, fp32 on CPU, the
gradient of the outputs' mean) on each shape in turn: the first call of a shape (what a new
shape costs: compiling included) and then the median of --steps calls. It reports, per mode, the
graphs torch.compile built (``torch._dynamo`` counters: a recompilation is one more graph) and
the recompilation reasons it logged, and the sum over shapes of the first call and of the steady
step. Prints a table; writes rows and an ``env`` block to --out.
"""
import argparse
import logging
import statistics
import sys
from pathlib import Path
from typing import Callable, Dict, List

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmvminet.models import VMINet  # noqa: E402
from tools.analysis.benchmark import (comma_list, environment, fmt, table,  # noqa: E402
                                      write_json)
from tools.analysis.benchmark_dense import time_steps  # noqa: E402

#: --modes -> torch.compile's dynamic argument (None: eager)
MODES = {'eager': None, 'static': False, 'dynamic': True}
#: keep-ratio 1333x800 resizes of COCO's common aspect ratios, padded to 32 (height x width)
DEFAULT_SHAPES = '800x1216,800x1088,800x1344,608x1344,800x1024,704x1344,800x1216'


def parse_shapes(text: str) -> List[tuple]:
    shapes = []
    for item in text.split(','):
        try:
            h, w = (int(v) for v in item.lower().split('x'))
        except ValueError:
            raise SystemExit(f'--shapes: {item!r} is not HEIGHTxWIDTH (say 800x1216)')
        if h < VMINet.min_input_size or w < VMINet.min_input_size:
            raise SystemExit(f'--shapes: {item} is below VMINet\'s {VMINet.min_input_size} px')
        shapes.append((h, w))
    return shapes


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='s', choices=list(VMINet.arch_settings))
    parser.add_argument('--modes', default='eager,static,dynamic')
    parser.add_argument('--shapes', default=DEFAULT_SHAPES,
                        help='comma separated HEIGHTxWIDTH, run in this order')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', default=None)
    args = parser.parse_args(argv)
    args.modes = comma_list(args.modes, MODES, '--modes')
    args.shapes = parse_shapes(args.shapes)
    return args


def backbone_step(model, x: torch.Tensor, device: str) -> Callable[[], object]:
    """One forward and backward of model on x, under the device's autocast."""
    dtype = torch.float16 if device == 'cuda' else torch.float32

    def step():
        with torch.autocast(device, dtype=dtype, enabled=device == 'cuda'):
            outs = model(x)
        sum(o.float().mean() for o in outs).backward()
    return step


class RecompileReasons(logging.Handler):
    """Collects the guard failures torch.compile logs when it recompiles."""

    LOGGER = 'torch._dynamo.guards.__recompiles'

    def __init__(self):
        super().__init__()
        self.reasons: List[str] = []

    def emit(self, record):
        failures = record.getMessage().split('guard failure(s):')[-1]
        self.reasons.extend(line.strip(' -') for line in failures.splitlines() if line.strip())


def measure_mode(mode: str, args) -> Dict:
    """The mode's row: per shape its first call and steady step, and the graphs compiled."""
    import torch._dynamo
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch._logging.set_logs(recompiles=True)
    reasons = RecompileReasons()
    logging.getLogger(RecompileReasons.LOGGER).addHandler(reasons)
    torch.manual_seed(0)
    model = VMINet(args.arch, out_indices=(0, 1, 2, 3)).to(args.device).train()
    if MODES[mode] is not None:
        model.forward = torch.compile(model.forward, dynamic=MODES[mode])
    per_shape = []
    try:
        for h, w in args.shapes:
            x = torch.randn(args.batch, 3, h, w, device=args.device)
            step = backbone_step(model, x, args.device)
            first = time_steps(step, 1, args.device)[0]
            steady = statistics.median(time_steps(step, args.steps, args.device))
            per_shape.append(dict(shape=f'{h}x{w}', first_ms=first, steady_ms=steady))
            print(f'{mode:8s} {h}x{w}: first call {first:9.1f} ms, then {steady:7.2f} ms',
                  flush=True)
    finally:
        logging.getLogger(RecompileReasons.LOGGER).removeHandler(reasons)
    return dict(mode=mode, shapes=per_shape,
                graphs=torch._dynamo.utils.counters['stats']['unique_graphs'],
                recompile_reasons=reasons.reasons,
                first_total_s=sum(s['first_ms'] for s in per_shape) / 1e3,
                steady_total_ms=sum(s['steady_ms'] for s in per_shape))


def report(rows: List[Dict]) -> str:
    eager = next((r for r in rows if r['mode'] == 'eager'), None)
    lines = []
    for r in rows:
        speedup = (eager['steady_total_ms'] / r['steady_total_ms']) if eager else None
        lines.append([r['mode'], str(r['graphs']), fmt(r['first_total_s'], 1),
                      fmt(r['steady_total_ms'], 1), fmt(speedup, 2)])
    return table(['mode', 'graphs compiled', 'first calls, s', 'steady steps summed, ms',
                  'steady vs eager'], lines)


def main(argv=None) -> Dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    print(f'VMINet-{args.arch.upper()} backbone, batch {args.batch}, {len(args.shapes)} shapes, '
          f'modes {", ".join(args.modes)}, on {args.device}', flush=True)
    results = dict(env=dict(environment(args), command='python tools/analysis/compile_shapes.py '
                            + ' '.join(argv)), rows=[])
    for mode in args.modes:
        results['rows'].append(measure_mode(mode, args))
        if args.out:  # after each mode: a run cut short keeps what it measured
            write_json(args.out, results)
    print(report(results['rows']))
    for r in results['rows']:
        for reason in r['recompile_reasons']:
            print(f'{r["mode"]}: recompiled for: {reason}')
    return results


if __name__ == '__main__':
    main()
