"""Where a Mask R-CNN training iteration goes, part by part: host time, device time, syncs.

    python tools/analysis/profile_det_step.py [CONFIG] [--data data/shapes_coco] [--iters 40]
        [--profile-iters 10] [--batch 2] [--loader-workers 2] [--num-train 64]
        [--fast-det-train] [--work-dir work_dirs/profile_det_step] [--out profile_det_step.json]

Trains CONFIG (default ``configs/mask_rcnn_vminet_s_1x.py``; any mmdet two-stage config, mmdet's
own included) through ``tools/train.py``'s runner on COCO-layout shapes data (made with
tools/data/make_shapes_dataset.py if --data has none), with tools/analysis/check_paper_configs.py's
settings (from scratch, AdamW, fp16 AMP on CUDA, fp32 on the CPU), for --iters iterations, and
runs --profile-iters of the last ones under torch.profiler. Every part of the iteration runs in a
``record_function`` range of its own: the data loader, the hooks, ``train_step`` and inside it the
data preprocessor (data to the device), backbone, neck, RPN head (forward, ``loss_by_feat``
with the targets, their assigner and sampler, and mmdet's per-level losses, proposals), RoI
head (assigner, sampler, RoI extraction, bbox and mask heads, their targets and losses), loss
parsing, backward, optimizer step.

Per part and iteration it reports: host ms (wall time of the range, its sub-parts included), of
which the host waited for the device (in ``cudaStreamSynchronize`` and the other syncs, after which
the GPU queue is empty, and in copies; every blocking copy and ``.item()`` is a copy and a sync),
device ms (the kernels the part launched), the operators it dispatched (each costs the host
a few microseconds whatever its size) and of them the ones that must read the device's data on
the host (``nonzero``, ``.item()`` and Python's ``bool`` / ``int`` of a tensor, ``unique``,
``masked_select``: on a GPU each is a sync, except an ``.item()`` of a CPU tensor such as
AdamW's step count; counted on the CPU too, where no other column says anything about a GPU
step). The totals say how much of the iteration the GPU was busy (union of kernel intervals).
Then the operators and autograd nodes that took the most host time of their own (self time:
their sub-operators not included; ``cudaLaunchKernel``'s is the cost of launching), to say
which ones a host-bound step should lose first. Without --fast-det-train it is mmdet's own path
(a ``FastDetTrainHook`` of the config is dropped); with it, the same run with the hook
(mmvminet/det_targets.py).

Writes the rows and the totals with the device, versions and command to --out (JSON) and a
markdown table to --out with .md.
"""
import argparse
import bisect
import functools
import os
import os.path as osp
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from tools.analysis import check_paper_configs as check  # noqa: E402
from tools.analysis.benchmark import fmt, write_json  # noqa: E402
from tools.analysis.benchmark_dense import markdown, resolve_config  # noqa: E402
from tools.data import make_shapes_dataset as shapes  # noqa: E402

SCRIPT = 'tools/analysis/profile_det_step.py'
PREFIX = 'part: '
#: host calls that wait for the device to finish what was queued before them
SYNC_CALLS = ('cudaStreamSynchronize', 'cudaDeviceSynchronize', 'cudaEventSynchronize',
              'cudaMemcpy')
#: copies: they wait for the queue too when host memory is pageable, but a blocking one is
#: followed by a cudaStreamSynchronize, so they add to the waiting time, not to the syncs
COPY_CALLS = ('cudaMemcpyAsync', )
#: operators whose output size or value the host must read from the device: a sync on a GPU
SYNCING_OPS = ('aten::nonzero', 'aten::_local_scalar_dense', 'aten::_unique2',
               'aten::unique_dim', 'aten::unique_consecutive', 'aten::masked_select')

#: (part, parent part, how to find the object in the runner, its method); parents come first.
#: A part whose object the model lacks is left out.
PARTS: List[Tuple[str, Optional[str], Callable, str]] = [
    ('data loading', None, lambda r: r.train_loop.dataloader_iterator, '__next__'),
    ('hooks', None, lambda r: r, 'call_hook'),
    ('train_step', None, lambda r: r.model, 'train_step'),
    ('data preprocessor', 'train_step', lambda r: r.model.data_preprocessor, 'forward'),
    ('backbone', 'train_step', lambda r: r.model.backbone, 'forward'),
    ('neck', 'train_step', lambda r: r.model.neck, 'forward'),
    ('rpn head', 'train_step', lambda r: r.model.rpn_head, 'loss_and_predict'),
    ('rpn forward', 'rpn head', lambda r: r.model.rpn_head, 'forward'),
    # anchors, targets, losses: mmdet's per level (loss_by_feat_single), FastDetTrainHook's
    # for all levels at once (mmvminet/det_rpn.py), so that only this row compares the two
    ('rpn loss_by_feat', 'rpn head', lambda r: r.model.rpn_head, 'loss_by_feat'),
    ('rpn targets', 'rpn loss_by_feat', lambda r: r.model.rpn_head, 'get_targets'),
    ('rpn assigner', 'rpn targets', lambda r: r.model.rpn_head.assigner, 'assign'),
    ('rpn sampler', 'rpn targets', lambda r: r.model.rpn_head.sampler, 'sample'),
    ('rpn losses', 'rpn loss_by_feat', lambda r: r.model.rpn_head, 'loss_by_feat_single'),
    ('proposals', 'rpn head', lambda r: r.model.rpn_head, 'predict_by_feat'),
    ('roi head', 'train_step', lambda r: r.model.roi_head, 'loss'),
    ('roi assigner', 'roi head', lambda r: r.model.roi_head.bbox_assigner, 'assign'),
    ('roi sampler', 'roi head', lambda r: r.model.roi_head.bbox_sampler, 'sample'),
    ('bbox roi extraction', 'roi head', lambda r: r.model.roi_head.bbox_roi_extractor, 'forward'),
    ('bbox head', 'roi head', lambda r: r.model.roi_head.bbox_head, 'forward'),
    ('bbox targets + loss', 'roi head', lambda r: r.model.roi_head.bbox_head, 'loss_and_target'),
    ('mask roi extraction', 'roi head', lambda r: r.model.roi_head.mask_roi_extractor, 'forward'),
    ('mask head', 'roi head', lambda r: r.model.roi_head.mask_head, 'forward'),
    ('mask targets + loss', 'roi head', lambda r: r.model.roi_head.mask_head, 'loss_and_target'),
    ('mask targets', 'mask targets + loss', lambda r: r.model.roi_head.mask_head, 'get_targets'),
    ('loss parsing', 'train_step', lambda r: r.model, 'parse_losses'),
    ('backward', 'train_step', lambda r: r.optim_wrapper, 'backward'),
    ('optimizer step', 'train_step', lambda r: r.optim_wrapper, 'step'),
    ('zero_grad', 'train_step', lambda r: r.optim_wrapper, 'zero_grad'),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', nargs='?', default='configs/mask_rcnn_vminet_s_1x.py',
                        help="a two-stage mmdet config; mmdet's own as mmdet::PATH")
    parser.add_argument('--data', default='data/shapes_coco',
                        help='COCO-layout shapes data (made there if missing)')
    parser.add_argument('--iters', type=int, default=40, help='training iterations in all')
    parser.add_argument('--profile-iters', type=int, default=10,
                        help='the last this many iterations are profiled')
    parser.add_argument('--batch', type=int, default=2, help='images per iteration')
    parser.add_argument('--loader-workers', type=int, default=2, help='dataloader workers')
    parser.add_argument('--num-train', type=int, default=64,
                        help='training scenes to make if --data has none')
    parser.add_argument('--fast-det-train', action='store_true',
                        help="train with mmvminet's FastDetTrainHook")
    parser.add_argument('--work-dir', default='work_dirs/profile_det_step',
                        help="the prepared config and the training run's log")
    parser.add_argument('--out', default='profile_det_step.json',
                        help='the JSON report; the markdown table goes next to it (.md)')
    args = parser.parse_args(argv)
    if args.profile_iters < 1 or args.iters <= args.profile_iters + 1 or args.batch < 1:
        parser.error('need --profile-iters >= 1, --iters > --profile-iters + 1 (the first '
                     'iterations warm up, the last ends the window) and --batch >= 1')
    return args


def prepare_config(args, cuda: bool) -> Config:
    """The config with check_paper_configs' data and optimizer, no validation, no checkpoint."""
    cfg = Config.fromfile(resolve_config(args.config))
    check.from_scratch(cfg.model)
    check.det_data(cfg, args.data, args.batch, args.loader_workers)
    check.schedule(cfg, args.iters, check.parse_args([]), cuda)  # its default lr, wd, warm-up
    # training only: the loop validates after the last iteration whatever the interval
    for split in ('val', 'test'):
        cfg[f'{split}_cfg'] = cfg[f'{split}_dataloader'] = cfg[f'{split}_evaluator'] = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger.interval = 10
    # mmdet's own path unless --fast-det-train (our detection configs name the hook)
    hooks = [h for h in cfg.get('custom_hooks', []) if h['type'] != 'FastDetTrainHook']
    cfg.custom_hooks = hooks + [dict(type='FastDetTrainHook')] if args.fast_det_train else hooks
    return cfg


# ----------------------------------------------------------------------------------------------
# Ranges
# ----------------------------------------------------------------------------------------------
def ranged(fn: Callable, name: str) -> Callable:
    # wraps: keeps the marks of fn's other wrappers (the lr schedulers' step counter)
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with torch.profiler.record_function(PREFIX + name):
            return fn(*args, **kwargs)
    return call


class RangedIterator:
    """An iterator whose ``__next__`` runs in a range (``next()`` looks the method up on the
    type, so an instance attribute would not do)."""

    def __init__(self, iterator, name: str):
        self.iterator, self.name = iterator, name

    def __iter__(self):
        return self

    def __next__(self):
        with torch.profiler.record_function(PREFIX + self.name):
            return next(self.iterator)


def instrument(runner):
    """Put every part of PARTS that the runner has in its range."""
    for name, _, get, method in PARTS:
        try:
            obj = get(runner)
        except AttributeError:
            continue
        if method == '__next__':
            runner.train_loop.dataloader_iterator = RangedIterator(obj, name)
        elif hasattr(obj, method):
            setattr(obj, method, ranged(getattr(obj, method), name))


class ProfileWindow:
    """Starts torch.profiler at the first hook call of iteration ``start`` and stops it at that
    of iteration ``stop``: the window holds whole iterations, each from its hooks before the
    step to the loading of the next batch."""

    def __init__(self, runner, start: int, stop: int, cuda: bool):
        from torch.profiler import ProfilerActivity, profile
        self.runner, self.start, self.stop, self.cuda = runner, start, stop, cuda
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        self.profiler = profile(activities=activities)
        self.marks: List[float] = []
        self.call_hook = runner.call_hook
        runner.call_hook = self.before_hooks

    def before_hooks(self, fn_name: str, **kwargs):
        runner = self.runner
        if fn_name == 'before_train':  # the loop, its loader and the optimizer exist now
            # the window stays outside the ranges: the profiler misses a range open at its
            # start, and one open at its end comes out cut short, without its sub-ranges
            runner.call_hook = self.call_hook
            instrument(runner)
            self.call_hook, runner.call_hook = runner.call_hook, self.before_hooks
        if fn_name == 'before_train_iter' and self.start <= runner.iter <= self.stop:
            if self.cuda:
                torch.cuda.synchronize()
            if runner.iter == self.start:
                self.profiler.start()
            self.marks.append(time.perf_counter())
            if runner.iter == self.stop:
                self.profiler.stop()
        return self.call_hook(fn_name, **kwargs)


# ----------------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------------
def with_descendants(events):
    stack = list(events)
    while stack:
        event = stack.pop()
        yield event
        stack.extend(event.cpu_children)


def part_rows(events, iters: int) -> Dict[str, Dict]:
    """Per part: calls, host ms, sync-wait ms, device ms, operators and syncing operators, each
    per iteration."""
    # a range shows on the GPU's timeline too: its host events only
    events = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    # on CUDA the autograd engine runs backward on threads of its own, while the thread that
    # called it waits in its range: a range holds the other threads' work done meanwhile
    roots = sorted((e for e in events if e.cpu_parent is None), key=lambda e: e.time_range.start)
    starts = [e.time_range.start for e in roots]
    totals: Dict[str, Dict] = {}
    for event in events:
        if not event.name.startswith(PREFIX):
            continue
        name = event.name[len(PREFIX):]
        row = totals.setdefault(name, dict(calls=0, host_ms=0.0, sync_ms=0.0, syncs=0,
                                           device_ms=0.0, ops=0, syncing_ops=0))
        row['calls'] += 1
        row['host_ms'] += event.cpu_time_total / 1e3
        span = slice(bisect.bisect_left(starts, event.time_range.start),
                     bisect.bisect_left(starts, event.time_range.end))
        elsewhere = [e for e in roots[span] if e.thread != event.thread]
        row['device_ms'] += sum(e.device_time_total for e in [event] + elsewhere) / 1e3
        for child in with_descendants(list(event.cpu_children) + elsewhere):
            row['syncing_ops'] += child.name in SYNCING_OPS  # nested ones too (index: nonzero)
            if child.name in SYNC_CALLS + COPY_CALLS:
                row['syncs'] += child.name in SYNC_CALLS
                row['sync_ms'] += child.cpu_time_total / 1e3
            elif child.name.startswith('aten::') and not (
                    child.cpu_parent is not None and child.cpu_parent.name.startswith('aten::')):
                row['ops'] += 1
    return {name: {k: v / iters for k, v in row.items()} for name, row in totals.items()}


def busy_ms(profiler) -> Optional[float]:
    """Milliseconds in which at least one kernel ran (union of the kernels' intervals)."""
    spans = sorted((e.start_ns(), e.start_ns() + e.duration_ns())
                   for e in profiler.profiler.kineto_results.events()
                   if e.device_type() == torch.autograd.DeviceType.CUDA
                   and not e.is_user_annotation())  # the ranges, on the GPU's timeline
    if not spans:
        return None
    total, (begin, end) = 0, spans[0]
    for s, e in spans[1:]:
        if s > end:
            total, begin = total + end - begin, s
        end = max(end, e)
    return (total + end - begin) / 1e6


def top_host_ops(events, iters: int, top: int = 25) -> List[Dict]:
    """The ``top`` operators (by name, the parts' ranges left out) with the most host time of
    their own: name, calls and self host ms, per iteration."""
    totals: Dict[str, List[float]] = {}
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CPU or event.name.startswith(PREFIX):
            continue
        total = totals.setdefault(event.name, [0, 0.0])
        total[0] += 1
        total[1] += event.self_cpu_time_total / 1e3
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
    return [dict(name=name, calls=calls / iters, self_host_ms=ms / iters)
            for name, (calls, ms) in ranked]


def analyse(window: ProfileWindow, iters: int) -> Dict:
    events = window.profiler.events()
    rows = part_rows(events, iters)
    iteration_ms = (window.marks[-1] - window.marks[0]) * 1e3 / iters
    parents = {name: parent for name, parent, _, _ in PARTS}
    ordered = []
    for name, parent in parents.items():
        if name in rows:
            depth = 0
            while parent is not None:
                depth, parent = depth + 1, parents[parent]
            ordered.append(dict(part=name, parent=parents[name], depth=depth, **rows[name]))
    busy = busy_ms(window.profiler) if window.cuda else None
    return dict(iteration_ms=iteration_ms, gpu_busy_ms=busy / iters if busy else None,
                gpu_busy_share=busy / iters / iteration_ms if busy else None, parts=ordered,
                top_host_ops=top_host_ops(events, iters))


def table(result: Dict) -> str:
    header = ['part', 'calls', 'host ms', 'of it waiting for the GPU (syncs)', 'device ms',
              'operators', 'of them syncing']
    busy = result['gpu_busy_ms']  # None on the CPU: no device columns
    lines = [['&nbsp;&nbsp;' * r['depth'] + r['part'], fmt(r['calls'], 1), fmt(r['host_ms'], 2),
              f"{fmt(r['sync_ms'], 2)} ({fmt(r['syncs'], 1)})" if busy else '-',
              fmt(r['device_ms'], 2) if busy else '-', fmt(r['ops'], 0),
              fmt(r['syncing_ops'], 0)]
             for r in result['parts']]
    lines.append(['**iteration**', '1', fmt(result['iteration_ms'], 2), '',
                  f"{fmt(busy, 2)} busy ({100 * result['gpu_busy_share']:.0f}%)" if busy
                  else '-', '', ''])
    ops = [[op['name'][:90], fmt(op['calls'], 1), fmt(op['self_host_ms'], 2)]
           for op in result['top_host_ops']]
    return (markdown(header, lines) + '\n\nThe most host time of their own, per iteration:\n\n'
            + markdown(['operator', 'calls', 'self host ms'], ops))


def main(argv=None) -> Dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    from tools import train
    if not osp.isfile(osp.join(args.data, 'meta.json')):  # any shapes data made before will do
        shapes.generate(args.data, num_train_cls=0, num_val_cls=0,
                        num_train_scenes=args.num_train, num_val_scenes=2, layout='coco',
                        workers=min(8, os.cpu_count() or 1))
    cfg = prepare_config(args, cuda)
    os.makedirs(args.work_dir, exist_ok=True)
    config_path = osp.join(args.work_dir, 'config.py')
    cfg.dump(config_path)
    runner = train.build_runner(train.parse_args([config_path, '--work-dir', args.work_dir]))
    # the window ends at the last iteration's first hooks: that iteration runs unprofiled
    window = ProfileWindow(runner, args.iters - 1 - args.profile_iters, args.iters - 1, cuda)
    runner.train()
    result = analyse(window, args.profile_iters)
    result['env'] = dict(check.environment(argv), command=shlex.join(['python', SCRIPT] + argv),
                         config=args.config, fast_det_train=args.fast_det_train, batch=args.batch)
    text = table(result)
    print('\n' + text)
    write_json(args.out, result)
    env = result['env']
    Path(args.out).with_suffix('.md').write_text(
        f"{env['device']}, torch {env['torch']}, mmcv {env['mmcv']}, mmdet {env['mmdet']}, git "
        f"{env['git']}; {args.config}, batch {args.batch}, per iteration, the mean of "
        f"{args.profile_iters} profiled\n\n    {env['command']}\n\n{text}\n")
    return result


if __name__ == '__main__':
    main()
