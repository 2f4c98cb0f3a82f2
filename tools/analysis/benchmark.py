"""Speed benchmark of image classification backbones: VMINet classifiers against timm peers.

    python tools/analysis/benchmark.py [--ours xs,s] [--recurrent] [--peers all|none|NAMES]
        [--modes eager,compile] [--triton] [--freezing] [--dtypes bf16[,fp16,fp32]] [--batch 256]
        [--train-batch 128] [--img-size 224] [--warmup 10] [--iters 30] [--repeats 5]
        [--device cuda|cpu]
        [--no-throughput] [--no-latency] [--no-cudagraph] [--no-memory] [--no-train]
        [--profile 0] [--out results.json]

For every model, mode (eager, or torch.compile 'max-autotune-no-cudagraphs') and autocast dtype:
inference throughput at --batch and batch-1 latency, each plain and replayed as a CUDA graph
(``img_s_graph``, ``latency_b1_graph_ms``: no host launch cost), peak CUDA memory, and the time
of one training step (forward, cross-entropy, backward, AdamW; bf16 autocast, --train-batch).
Inference runs on the model's fused / reparameterised form where it has one; everything is
channels_last. --triton adds, for our models, inference rows of each mode with their Triton
kernels (``eager+triton``, ``compile+triton``; VMINet.fuse(triton=True), vmisa_triton.py).
--freezing compiles every model's inference with inductor's freezing (weights as constants: their
autocast casts, folded norms and other weight-only work are done once at compile time). The
best-against-best table takes each model's best img/s over modes, plain or graph. Each timing is
the median over --repeats runs of --iters calls (CUDA events; time.perf_counter on CPU) after
--warmup calls. Prints a table and writes the rows plus an ``env`` block to --out. A failing
measurement is recorded in its row, never fatal. --profile N runs N more batch calls of each
inference row under torch.profiler and keeps its top kernels by device time in the row
(``profile``: name, ms per call, share, calls per call), printed too.
"""
import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmvminet.models import VMINet  # noqa: E402

try:
    import timm
except ImportError:
    timm = None

NUM_CLASSES = 1000
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}
MODES = ('eager', 'compile')
COMPILE_MODE = 'max-autotune-no-cudagraphs'  # default of --compile-mode
OURS = {'ti': 'VMINet-Ti', 'xs': 'VMINet-XS', 's': 'VMINet-S', 'b': 'VMINet-B'}
# --peers key (the timm name, except SwiftFormer's, looked up at run time) -> table name
PEERS = {
    'starnet_s4': 'StarNet-S4',
    'swiftformer_s': 'SwiftFormer-S',
    'mobilevitv2_100': 'MobileViTv2-1.0',
    'efficientvit_m2': 'EfficientViT-M2',
    'pvt_v2_b0': 'PVTv2-B0',
    'mobileone_s2': 'MobileOne-S2',
    'convnext_tiny': 'ConvNeXt-T',
    'swin_tiny_patch4_window7_224': 'Swin-T',
}
# the modules timm's reparameterize_model acts on
REPARAM_HOOKS = ('fuse', 'reparameterize', 'switch_to_deploy')
DEFAULTS = {
    'cuda': dict(batch=256, train_batch=128, img_size=224, warmup=10, iters=30, repeats=5,
                 modes='eager,compile'),
    'cpu': dict(batch=4, train_batch=4, img_size=128, warmup=1, iters=3, repeats=1,
                modes='eager'),
}


class VMINetClassifier(nn.Module):
    """VMINet + global average pool + linear head: (B, 3, H, W) -> (B, 1000) logits."""

    def __init__(self, arch: str, form: str = 'matrix', num_classes: int = NUM_CLASSES):
        super().__init__()
        self.backbone = VMINet(arch, out_indices=(3, ), form=form)
        self.head = nn.Linear(self.backbone.channels[-1], num_classes)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


@dataclass
class ModelSpec:
    """A model to benchmark: table name, origin and a builder of a fresh CPU instance."""
    name: str
    source: str
    build: Callable[[], nn.Module]


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def comma_list(text: str, valid, what: str) -> List[str]:
    """Split 'a,b' into names, lower-cased, each checked against ``valid``; 'none' -> []."""
    names = [n.strip().lower() for n in text.split(',') if n.strip()]
    if names == ['none']:
        return []
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown {what} {unknown}; valid: {", ".join(valid)}')
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--ours', default='xs,s',
                        help=f'VMINet variants: {",".join(OURS)} or none (default: xs,s)')
    parser.add_argument('--recurrent', action='store_true',
                        help='also benchmark VMINet-XS in the recurrent form (XS-R)')
    parser.add_argument('--peers', default='all',
                        help=f'timm peers: all, none or some of {",".join(PEERS)}')
    parser.add_argument('--modes', help='eager,compile (default: both on CUDA, eager on CPU)')
    parser.add_argument('--triton', action='store_true',
                        help='also run our models with their Triton kernels '
                        '(inference rows, modes MODE+triton; CUDA only)')
    parser.add_argument('--compile-mode', default=COMPILE_MODE,
                        help=f'torch.compile mode (default {COMPILE_MODE}; "default" compiles '
                        'faster)')
    parser.add_argument('--freezing', action='store_true',
                        help="compile inference with torch._inductor.config.freezing (every "
                        "model of the run; training steps are not frozen)")
    parser.add_argument('--dtypes', default='bf16', help='inference autocast dtypes: '
                        'bf16,fp16,fp32 (default: bf16)')
    parser.add_argument('--batch', type=int, help='inference batch (CUDA default 256)')
    parser.add_argument('--train-batch', type=int, help='training batch (CUDA default 128)')
    parser.add_argument('--img-size', type=int, help='input side (CUDA default 224)')
    parser.add_argument('--warmup', type=int, help='untimed calls first (CUDA default 10)')
    parser.add_argument('--iters', type=int, help='calls per timed run (CUDA default 30)')
    parser.add_argument('--repeats', type=int, help='timed runs, median kept (CUDA default 5)')
    parser.add_argument('--device', choices=['cuda', 'cpu'],
                        default='cuda' if torch.cuda.is_available() else 'cpu')
    for name, what in [('throughput', 'inference img/s at --batch'),
                       ('latency', 'batch-1 latency'),
                       ('cudagraph', 'the throughput and latency forwards replayed as CUDA '
                                     'graphs (CUDA only)'),
                       ('memory', 'peak CUDA memory (CUDA only)'),
                       ('train', 'training step time')]:
        parser.add_argument(f'--no-{name}', dest=name, action='store_false', help=f'skip {what}')
    parser.add_argument('--profile', type=int, default=0,
                        help='profile this many more batch calls per inference row (default 0)')
    parser.add_argument('--out', default='results.json', help='JSON file of all rows + env')
    args = parser.parse_args(argv)
    if args.profile < 0:
        parser.error('--profile takes a count >= 0')

    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda but no CUDA device is available')
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    try:
        args.ours = comma_list(args.ours, OURS, 'VMINet arch')
        args.peers = list(PEERS) if args.peers == 'all' else comma_list(args.peers, PEERS, 'peer')
        args.modes = comma_list(args.modes, MODES, 'mode')
        args.dtypes = comma_list(args.dtypes, DTYPES, 'dtype')
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if not args.modes or not args.dtypes:
        parser.error('--modes and --dtypes need at least one entry')
    if args.freezing and 'compile' not in args.modes:
        parser.error('--freezing needs the compile mode (--modes compile)')
    if args.device == 'cpu':
        if args.triton:
            parser.error('--triton needs --device cuda')
        args.cudagraph = args.memory = False
    return args


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def resolve_timm_name(key: str) -> Optional[str]:
    """The installed timm's name for a peer key, or None when it has no such model."""
    if key == 'swiftformer_s':
        names = [n for n in timm.list_models('*swiftformer*') if n.endswith('_s')]
        return names[0] if names else None
    return key if timm.is_model(key) else None


def model_specs(args) -> List[ModelSpec]:
    """Ours (plus XS-R with --recurrent), then the peers the installed timm has."""
    specs = [ModelSpec(OURS[a], f'mmvminet:{a}', partial(VMINetClassifier, a)) for a in args.ours]
    if args.recurrent:
        specs.append(ModelSpec('VMINet-XS-R', 'mmvminet:xs:recurrent',
                               partial(VMINetClassifier, 'xs', 'recurrent')))
    if args.peers and timm is None:
        print('note: timm is not importable, skipping the peers', flush=True)
        return specs
    for key in args.peers:
        name = resolve_timm_name(key)
        if name is None:
            print(f'note: timm {timm.__version__} has no {key}, skipping {PEERS[key]}', flush=True)
            continue
        specs.append(ModelSpec(PEERS[key], f'timm:{name}',
                               partial(timm.create_model, name, pretrained=False,
                                       num_classes=NUM_CLASSES)))
    return specs


def fuse_for_inference(model: nn.Module, triton: bool = False):
    """Eval mode plus the model's own inference fusion if it has one; returns (model, fused).
    triton: our models' Triton kernels (VMINet.fuse(triton=True))."""
    model.eval()
    if isinstance(model, VMINetClassifier):
        model.backbone.fuse(triton=triton)
        return model, True
    try:
        from timm.utils.model import reparameterize_model
    except ImportError:
        return model, False
    children = list(model.modules())[1:]
    if not any(hasattr(m, hook) for m in children for hook in REPARAM_HOOKS):
        return model, False
    return reparameterize_model(model, inplace=True), True


def prepare(model: nn.Module, mode: str, device: str,
            compile_mode: str = COMPILE_MODE) -> nn.Module:
    """channels_last on the device, wrapped in torch.compile for the 'compile' mode."""
    model = model.to(device, memory_format=torch.channels_last)
    if mode == 'compile':
        return torch.compile(model, mode=compile_mode, dynamic=False)
    return model


def count_params(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------
def autocast(device: str, dtype: torch.dtype, cache: bool = True):
    """Autocast to a reduced dtype; fp32 means no autocast at all."""
    if dtype is torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=dtype, cache_enabled=cache)


def seconds_per_call(fn: Callable[[], object], args) -> float:
    """Median over ``repeats`` timed runs of ``iters`` calls each, after ``warmup`` calls."""
    cuda = args.device == 'cuda'
    for _ in range(args.warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(args.repeats):
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.iters):
                fn()
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            begin = time.perf_counter()
            for _ in range(args.iters):
                fn()
            elapsed = time.perf_counter() - begin
        times.append(elapsed / args.iters)
    return statistics.median(times)


def profile_steps(step: Callable[[], object], steps: int, device: str,
                  top: int = 25) -> List[Dict]:
    """The ``top`` kernels (CPU: operators) by self time over ``steps`` calls of ``step``:
    name, ms per step and share of the time of all of them."""
    from torch.profiler import ProfilerActivity, profile
    cuda = device == 'cuda'
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    attr = 'self_device_time_total' if cuda else 'self_cpu_time_total'
    events = [e for e in prof.key_averages() if getattr(e, attr) > 0]
    total = sum(getattr(e, attr) for e in events)
    events.sort(key=lambda e: getattr(e, attr), reverse=True)
    return [dict(name=e.key[:160], ms_per_step=round(getattr(e, attr) / 1e3 / steps, 3),
                 share=round(getattr(e, attr) / total, 4), calls_per_step=e.count / steps)
            for e in events[:top]]


def images(batch: int, args) -> torch.Tensor:
    x = torch.randn(batch, 3, args.img_size, args.img_size, device=args.device)
    return x.contiguous(memory_format=torch.channels_last)


def throughput(model, dtype, args) -> float:
    """Images per second at ``args.batch``."""
    x = images(args.batch, args)
    with torch.inference_mode(), autocast(args.device, dtype):
        return args.batch / seconds_per_call(lambda: model(x), args)


def inference_profile(model, dtype, args) -> List[Dict]:
    """profile_steps of ``args.profile`` batch calls: where a batch's device time goes."""
    x = images(args.batch, args)
    with torch.inference_mode(), autocast(args.device, dtype):
        return profile_steps(lambda: model(x), args.profile, args.device)


def latency(model, dtype, args) -> float:
    """Milliseconds per batch-1 call, launched op by op (or compiled code) from Python."""
    x = images(1, args)
    with torch.inference_mode(), autocast(args.device, dtype):
        return seconds_per_call(lambda: model(x), args) * 1e3


def graph_throughput(model, dtype, args) -> float:
    """Images per second at ``args.batch``, the forward replayed as a CUDA graph (no launch
    overhead: where the host is slower than the GPU, this is the GPU's rate)."""
    return args.batch / graph_seconds(model, dtype, args.batch, args)


def graph_latency(model, dtype, args) -> float:
    """Milliseconds per replay of one batch-1 forward captured as a CUDA graph."""
    return graph_seconds(model, dtype, 1, args) * 1e3


def graph_seconds(model, dtype, batch: int, args) -> float:
    """Seconds per replay of one forward at ``batch`` captured as a CUDA graph."""
    static_input = images(batch, args)
    # autocast's weight-cast cache must be off while capturing
    with torch.inference_mode(), autocast('cuda', dtype, cache=False):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(args.warmup, 3)):
                model(static_input)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(static_input)
    return seconds_per_call(graph.replay, args)


def train_step_time(spec: ModelSpec, mode: str, args) -> float:
    """Milliseconds per forward + cross-entropy + backward + AdamW step (bf16 autocast)."""
    model = spec.build().train()
    runner = prepare(model, mode, args.device, args.compile_mode)  # moves model's parameters in place
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=args.device == 'cuda')
    x = images(args.train_batch, args)
    target = torch.randint(0, NUM_CLASSES, (args.train_batch, ), device=args.device)

    def step():
        with autocast(args.device, torch.bfloat16):
            loss = F.cross_entropy(runner(x), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return seconds_per_call(step, args) * 1e3


def measure(label: str, fn: Callable[[], object], errors: List[str], args):
    """Run one measurement with the CUDA peak counter reset first.

    Returns (value, peak MB or None); on failure (None, None) with the error added to ``errors``.
    """
    track = args.memory
    try:
        if track:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        value = fn()
        return value, torch.cuda.max_memory_allocated() / 2**20 if track else None
    except Exception as exc:  # noqa: BLE001  (any failure is data, not a reason to stop)
        detail = str(exc).strip().splitlines()
        message = f'{label}: {type(exc).__name__}' + (f': {detail[0][:300]}' if detail else '')
        errors.append(message)
        print(f'    ! {message}', flush=True)
        traceback.print_exc(file=sys.stderr)
        release_memory(args.device)
        return None, None


def release_memory(device: str):
    gc.collect()
    if device == 'cuda':
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# One model
# ----------------------------------------------------------------------------------------------
def benchmark_model(spec: ModelSpec, args) -> List[Dict]:
    """All rows of one model: one per (mode, dtype)."""
    errors = []
    params, _ = measure('build', lambda: round(count_params(spec.build()), 3), errors, args)
    base = dict(model=spec.name, source=spec.source, params_m=params)
    if errors:
        return [dict(base, error=errors[0])]

    rows = []
    modes = list(args.modes)
    if args.triton and spec.source.startswith('mmvminet:'):
        modes += [f'{mode}+triton' for mode in args.modes]
    for label in modes:
        mode, _, kernels = label.partition('+')
        triton = kernels == 'triton'
        mode_errors = []
        train_ms = train_peak = None
        if args.train and not triton:  # the kernels are inference-only
            train_ms, train_peak = measure(f'{mode} train',
                                           lambda: train_step_time(spec, mode, args),
                                           mode_errors, args)
            release_memory(args.device)

        def build_inference():
            model, fused = fuse_for_inference(spec.build(), triton)
            return prepare(model, mode, args.device, args.compile_mode), fused

        built, _ = measure(f'{label} build', build_inference, mode_errors, args)
        model, fused = built if built else (None, None)
        for dtype_name in args.dtypes:
            dtype = DTYPES[dtype_name]
            errors = list(mode_errors)
            row = dict(base, mode=label, dtype=dtype_name, reparam=fused, batch=args.batch,
                       img_size=args.img_size, img_s=None, img_s_graph=None, peak_mb=None,
                       latency_b1_ms=None, latency_b1_graph_ms=None, train_batch=args.train_batch,
                       train_dtype='bf16', train_step_ms=train_ms, train_peak_mb=train_peak,
                       best=False)
            if model is not None:
                where = f'{label} {dtype_name}'
                if args.throughput:
                    row['img_s'], row['peak_mb'] = measure(
                        f'{where} throughput', lambda: throughput(model, dtype, args), errors,
                        args)
                if args.throughput and args.cudagraph:
                    row['img_s_graph'], _ = measure(
                        f'{where} cudagraph throughput',
                        lambda: graph_throughput(model, dtype, args), errors, args)
                if args.profile:
                    row['profile'], _ = measure(
                        f'{where} profile', lambda: inference_profile(model, dtype, args),
                        errors, args)
                    for kernel in row['profile'] or []:
                        print(f"      {kernel['ms_per_step']:8.3f} ms {kernel['share']:6.1%} "
                              f"x{kernel['calls_per_step']:g}  {kernel['name'][:90]}")
                if args.latency:
                    row['latency_b1_ms'], _ = measure(
                        f'{where} latency', lambda: latency(model, dtype, args), errors, args)
                if args.latency and args.cudagraph:
                    row['latency_b1_graph_ms'], _ = measure(
                        f'{where} cudagraph', lambda: graph_latency(model, dtype, args), errors,
                        args)
            row['error'] = '; '.join(errors) or None
            rows.append(row)
        del model
        release_memory(args.device)
    mark_best(rows)
    return rows


def best_key(row: Dict):
    """Sort key, smaller is better: img/s, else batch-1 latency, else train step time."""
    latencies = [v for v in (row.get('latency_b1_ms'), row.get('latency_b1_graph_ms')) if v]
    if row.get('img_s'):
        return (0, -max(row['img_s'], row.get('img_s_graph') or 0))
    if latencies:
        return (1, min(latencies))
    if row.get('train_step_ms'):
        return (2, row['train_step_ms'])
    return None


def mark_best(rows: List[Dict]):
    """Flag, per dtype, the mode row of one model with the best ``best_key``."""
    for dtype in {r.get('dtype') for r in rows}:
        ranked = [r for r in rows if r.get('dtype') == dtype and best_key(r) is not None]
        if len(ranked) > 1:
            min(ranked, key=best_key)['best'] = True


def best_against_best(rows: List[Dict]) -> List[Dict]:
    """Per model and dtype, each metric at its best over the modes (and graph / no graph)."""
    summary = []
    for model in dict.fromkeys(r['model'] for r in rows):
        for dtype in dict.fromkeys(r.get('dtype') for r in rows if r['model'] == model):
            if dtype is None:
                continue
            group = [r for r in rows if r['model'] == model and r['dtype'] == dtype]
            entry = dict(model=model, dtype=dtype, params_m=group[0]['params_m'])
            candidates = {
                'img_s': ([(r['img_s'], r['mode']) for r in group if r['img_s']] +
                          [(r['img_s_graph'], f'{r["mode"]}+cudagraph') for r in group
                           if r.get('img_s_graph')], max),
                'latency_b1_ms': ([(r['latency_b1_ms'], r['mode']) for r in group
                                   if r['latency_b1_ms']] +
                                  [(r['latency_b1_graph_ms'], f'{r["mode"]}+cudagraph')
                                   for r in group if r['latency_b1_graph_ms']], min),
                'train_step_ms': ([(r['train_step_ms'], r['mode']) for r in group
                                   if r['train_step_ms']], min),
            }
            for key, (values, pick) in candidates.items():
                value, mode = pick(values, key=lambda v: v[0]) if values else (None, None)
                entry[key], entry[f'{key}_mode'] = value, mode
            summary.append(entry)
    return summary


# ----------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------
def fmt(value, digits=1) -> str:
    if value is None:
        return '-'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def table(header: List[str], lines: List[List[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *lines)]
    rule = '  '.join('-' * w for w in widths)
    text = [header] + lines
    out = ['  '.join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in text]
    return '\n'.join([out[0], rule] + out[1:])


def results_table(rows: List[Dict]) -> str:
    header = ['model', 'params M', 'mode', 'reparam', 'dtype', 'img/s', 'img/s cudagraph',
              'lat b1 ms', 'lat b1 ms cudagraph', 'peak MB', 'train step ms', 'best']
    lines = [[r['model'], fmt(r['params_m'], 2), fmt(r.get('mode')), fmt(r.get('reparam')),
              fmt(r.get('dtype')), fmt(r.get('img_s')), fmt(r.get('img_s_graph')),
              fmt(r.get('latency_b1_ms'), 2), fmt(r.get('latency_b1_graph_ms'), 2),
              fmt(r.get('peak_mb'), 0),
              fmt(r.get('train_step_ms'), 2), '*' if r.get('best') else '']
             for r in rows]
    return table(header, lines)


def summary_table(summary: List[Dict]) -> str:
    header = ['model', 'params M', 'dtype', 'best img/s', 'best lat b1 ms', 'best train ms']
    lines = [[s['model'], fmt(s['params_m'], 2), s['dtype'],
              f'{fmt(s["img_s"])} ({fmt(s["img_s_mode"])})',
              f'{fmt(s["latency_b1_ms"], 2)} ({fmt(s["latency_b1_ms_mode"])})',
              f'{fmt(s["train_step_ms"], 2)} ({fmt(s["train_step_ms_mode"])})']
             for s in summary]
    return table(header, lines)


def progress_line(row: Dict) -> str:
    if row.get('mode') is None:
        return f'    {row["error"]}'
    return (f'    {row["mode"]:<7} {row["dtype"]:<4} img/s {fmt(row["img_s"])} '
            f'(graph {fmt(row.get("img_s_graph"))})  '
            f'b1 {fmt(row["latency_b1_ms"], 2)} ms  graph {fmt(row["latency_b1_graph_ms"], 2)} '
            f'ms  peak {fmt(row["peak_mb"], 0)} MB  train {fmt(row["train_step_ms"], 2)} ms')


def environment(args) -> Dict:
    cuda = args.device == 'cuda'
    return dict(
        date=datetime.now().astimezone().isoformat(timespec='seconds'),
        argv=list(sys.argv),
        args=dict(vars(args)),
        device=torch.cuda.get_device_name() if cuda else
        f'cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads',
        python=platform.python_version(),
        torch=torch.__version__,
        timm=getattr(timm, '__version__', None),
        cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if cuda else None,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        float32_matmul_precision=torch.get_float32_matmul_precision(),
        platform=platform.platform(),
    )


def write_json(path: str, results: Dict):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        json.dump(results, f, indent=2)


# ----------------------------------------------------------------------------------------------
def main(argv=None) -> Dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    if args.device == 'cuda':
        torch.backends.cudnn.benchmark = True
    if 'compile' in args.modes:
        # every dtype x input shape x train/eval is one more compiled graph per model
        dynamo_config = torch._dynamo.config
        limit = 'recompile_limit' if hasattr(dynamo_config, 'recompile_limit') \
            else 'cache_size_limit'
        setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), 64))
        # inductor freezes only graphs compiled without grad: the inference rows
        torch._inductor.config.freezing = args.freezing

    specs = model_specs(args)
    results = dict(env=environment(args), rows=[], best=[])
    print(f'{len(specs)} models on {results["env"]["device"]}; modes {",".join(args.modes)}, '
          f'dtypes {",".join(args.dtypes)}', flush=True)
    for i, spec in enumerate(specs, 1):
        begin = time.perf_counter()
        rows = benchmark_model(spec, args)
        results['rows'].extend(rows)
        results['best'] = best_against_best(results['rows'])
        write_json(args.out, results)  # partial results survive a crash later on
        print(f'[{i}/{len(specs)}] {spec.name} ({spec.source}) done in '
              f'{time.perf_counter() - begin:.1f} s', flush=True)
        for row in rows:
            print(progress_line(row), flush=True)
        if 'compile' in args.modes:
            torch._dynamo.reset()
        release_memory(args.device)

    print('\n' + results_table(results['rows']))
    print('\nbest against best (each metric at its best mode):\n' +
          summary_table(results['best']))
    errors = [f'{r["model"]}: {r["error"]}' for r in results['rows'] if r.get('error')]
    if errors:
        print('\nerrors:\n  ' + '\n  '.join(errors))
    print(f'\nwrote {args.out}', flush=True)
    return results


if __name__ == '__main__':
    main()
