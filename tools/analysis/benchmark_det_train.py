"""A detection config trained through tools/train.py's runner, mmdet's path against
FastDetTrainHook's: every iteration timed, data loading included.

    python tools/analysis/benchmark_det_train.py [CONFIG] [--data data/shapes_coco_400]
        [--iters 200] [--steady-from 100] [--batch 2] [--loader-workers 8] [--num-train 400]
        [--paths mmdet,fast] [--work-dir work_dirs/benchmark_det_train]
        [--out benchmark_det_train.json] [--cfg-options KEY=VALUE ...] [--plan-shapes]

Each path trains CONFIG (default ``configs/mask_rcnn_vminet_s_1x.py``) in a process of its own,
so that neither finds the other's caches warm (cuDNN's plans are made per input shape), with
tools/analysis/profile_det_step.py's settings: COCO-layout shapes scenes (made with
tools/data/make_shapes_dataset.py if --data has none) resized as the config does (1333x800 keeping
the aspect ratio), check_paper_configs.py's optimizer (fp16 AMP on CUDA), no validation, no
checkpoint; --cfg-options changes that config as tools/train.py's does. The runner is the one
``tools/train.py`` builds, with one more hook that notes when each iteration ends, how long it
waited for its batch and the batch's padded shape.

Keep-ratio batches come in a few dozen padded shapes, and the first iteration of a new shape
pays once for it (cuDNN chooses its convolution plans per shape; a long run has seen them all
early). So the report gives, per path: the training loop's wall time; the mean and median
iteration from --steady-from on; the mean of the iterations whose batch shape had been seen before
(what most of a 12-epoch run is) and of those that met a new one; the mean wait for data; and
the speed-up of the hook's path over mmdet's for each. --plan-shapes says beforehand, without
training (seconds on a CPU), which iterations of the run will meet a new padded shape (from the
images' sizes and the runner's seeded sampler), to choose --iters and --steady-from. The defaults
keep the run in one epoch of 400 scenes: at each new epoch mmengine's iteration-based loop sleeps
2 s (its endless data iterator, against a deadlock), which a small dataset meets often and which
shows as that iteration's wait for data. 200 iterations of them meet 33 padded shapes, 29 in the
first 100 and one in each of 4 of the last 100 (the split by seen and new shapes keeps those apart).

Writes the iterations, the summaries, the device, versions and command to --out (JSON) and a
markdown table to --out with .md.
"""
import argparse
import json
import os
import os.path as osp
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmengine.hooks import Hook  # noqa: E402

from mmvminet.runner_utils import DictAction  # noqa: E402
from tools.analysis import check_paper_configs as check  # noqa: E402
from tools.analysis.benchmark import write_json  # noqa: E402
from tools.analysis.benchmark_dense import markdown  # noqa: E402

SCRIPT = 'tools/analysis/benchmark_det_train.py'
#: words in the names of transforms that may change an image's size besides ``Resize``
#: (RandomResize, RandomCrop, Pad, Expand, Mosaic, MixUp...): --plan-shapes refuses them
RESHAPING_WORDS = ('Resize', 'Crop', 'Pad', 'Expand', 'Mosaic', 'MixUp', 'Affine', 'Rotate')
#: --paths -> whether the run adds FastDetTrainHook (profile_det_step's --fast-det-train)
PATHS = {'mmdet': False, 'fast': True}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', nargs='?', default='configs/mask_rcnn_vminet_s_1x.py',
                        help='a two-stage mmdet config (default: %(default)s)')
    parser.add_argument('--data', default='data/shapes_coco_400',
                        help='COCO-layout shapes data, made there if missing '
                        '(default: %(default)s)')
    parser.add_argument('--iters', type=int, default=200, help='training iterations per path')
    parser.add_argument('--steady-from', type=int, default=100,
                        help='the iterations from this one on (0-based) make the steady mean')
    parser.add_argument('--batch', type=int, default=2, help='images per iteration')
    parser.add_argument('--loader-workers', type=int, default=8, help='dataloader workers')
    parser.add_argument('--num-train', type=int, default=400,
                        help='training scenes to make if --data has none')
    parser.add_argument('--paths', default='mmdet,fast',
                        help='comma separated, in this order: some of mmdet (mmdet\'s own code), '
                        'fast (with FastDetTrainHook) (default: %(default)s)')
    parser.add_argument('--work-dir', default='work_dirs/benchmark_det_train',
                        help='each path trains in a folder of its own here')
    parser.add_argument('--out', default='benchmark_det_train.json',
                        help='the JSON report; the markdown table goes next to it (.md)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='KEY=VALUE pairs merged into the prepared config of both paths')
    parser.add_argument('--plan-shapes', action='store_true',
                        help='only say which of the --iters batches meet a new padded shape, '
                        'from the images\' sizes and the seeded sampler, without training')
    parser.add_argument('--child', choices=list(PATHS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(',') if p.strip()]
    unknown = [p for p in args.paths if p not in PATHS]
    if unknown or not args.paths:
        parser.error(f'--paths: unknown {unknown}, choose from {sorted(PATHS)}' if unknown
                     else '--paths needs at least one of mmdet, fast')
    if args.iters < 2 or not 0 <= args.steady_from < args.iters or args.batch < 1:
        parser.error('need --iters >= 2, 0 <= --steady-from < --iters and --batch >= 1')
    if '::' not in args.config and not osp.isfile(args.config):
        parser.error(f'no config at {args.config}')
    return args


# ----------------------------------------------------------------------------------------------
# One path, in its own process
# ----------------------------------------------------------------------------------------------
def batch_shape(sizes: List[Tuple[int, int]], divisor: int) -> List[int]:
    """[H, W] of a batch of images of ``sizes`` (each (H, W)) as the data preprocessor pads it:
    the largest height and width, rounded up to a multiple of ``divisor``."""
    return [-(-max(size[i] for size in sizes) // divisor) * divisor for i in (0, 1)]


def first_seen(shapes: List[List[int]]) -> List[bool]:
    """Whether each batch shape is one that no earlier batch had."""
    seen, new = set(), []
    for shape in shapes:
        new.append(tuple(shape) not in seen)
        seen.add(tuple(shape))
    return new


class IterationClock(Hook):
    """A hook of the lowest priority: each iteration's end (after every other hook), its wait
    for the batch (from the previous iteration's end to this one's first hooks) and the batch's
    padded shape (the largest image, rounded up as the data preprocessor pads)."""

    priority = 'LOWEST'

    def __init__(self, divisor: int):
        self.divisor = divisor
        self.rows: List[Dict] = []
        self.loop_begin = self.loop_end = self.last_end = 0.0

    def before_train(self, runner):
        self.loop_begin = self.last_end = time.perf_counter()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        sizes = [tuple(img.shape[-2:]) for img in data_batch['inputs']]
        self.rows.append(dict(data_ms=(time.perf_counter() - self.last_end) * 1e3,
                              shape=batch_shape(sizes, self.divisor)))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        now = time.perf_counter()
        self.rows[-1]['ms'] = (now - self.last_end) * 1e3
        self.last_end = now

    def after_train(self, runner):
        self.loop_end = time.perf_counter()


def path_config(args, path: str):
    """profile_det_step's config of ``path`` with --cfg-options merged in."""
    import torch
    from tools.analysis import profile_det_step
    cfg = profile_det_step.prepare_config(
        argparse.Namespace(config=args.config, data=args.data, batch=args.batch,
                           loader_workers=args.loader_workers, iters=args.iters,
                           fast_det_train=PATHS[path]), torch.cuda.is_available())
    cfg.default_hooks.logger.interval = 50
    cfg.merge_from_dict(args.cfg_options)
    return cfg


def planned_shapes(cfg, iters: int) -> Tuple[List[List[int]], List[int]]:
    """The padded shape of each of the first ``iters`` training batches in the order the
    runner's loader gives them (its sampler and batch sampler seeded as the runner seeds them,
    epoch after epoch), from the images' sizes and the pipeline's keep-ratio ``Resize``, as
    mmcv rescales: no image is read. Also the (0-based) iterations that begin a new epoch after
    the first."""
    from mmcv.image.geometric import rescale_size
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    pipeline = cfg.train_dataloader.dataset.pipeline
    resizes = [step for step in pipeline if step['type'] == 'Resize']
    if len(resizes) != 1 or not resizes[0].get('keep_ratio') or 'scale' not in resizes[0]:
        raise ValueError('planning the batch shapes needs one keep-ratio Resize with a scale in '
                         'the training pipeline')
    reshaping = [step['type'] for step in pipeline if step['type'] != 'Resize' and any(
        word in step['type'] for word in RESHAPING_WORDS)]
    if reshaping:
        raise ValueError(f'planning the batch shapes knows only the Resize: the training '
                         f'pipeline also has {reshaping}, which may change the image sizes')
    seed = cfg.get('randomness', {}).get('seed')
    if seed is None:
        raise ValueError('planning the batch shapes needs a seeded run (randomness.seed)')
    scale = tuple(resizes[0]['scale'])
    divisor = cfg.model.data_preprocessor.get('pad_size_divisor') or 1
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
    dataset, shapes, epoch, epoch_starts = loader.dataset, [], 0, []
    # the sampler that reshuffles: the loader's, or with a batch sampler (mmdet's aspect-ratio
    # grouping) the one inside it, as the runner's endless iterator finds it at each new epoch
    sampler = loader.sampler if hasattr(loader.sampler, 'set_epoch') \
        else loader.batch_sampler.sampler
    while len(shapes) < iters:
        sampler.set_epoch(epoch)
        if epoch:
            epoch_starts.append(len(shapes))
        for indices in loader.batch_sampler:
            infos = [dataset.get_data_info(i) for i in indices]
            sizes = [rescale_size((info['width'], info['height']), scale)[::-1]
                     for info in infos]  # mmcv's (w, h) -> (h, w)
            shapes.append(batch_shape(sizes, divisor))
            if len(shapes) == iters:
                break
        epoch += 1
    return shapes, epoch_starts


def new_shape_counts(shapes: List[List[int]], every: int = 10) -> List[int]:
    """How many batches of each ``every`` iterations have a shape no earlier batch had."""
    new = first_seen(shapes)
    return [sum(new[i:i + every]) for i in range(0, len(new), every)]


def run_path(args) -> Dict:
    """Train args.child's path; its iterations and loop time."""
    from tools import train
    cfg = path_config(args, args.child)
    work_dir = osp.join(args.work_dir, args.child)
    os.makedirs(work_dir, exist_ok=True)
    config_path = osp.join(work_dir, 'config.py')
    cfg.dump(config_path)
    started = time.perf_counter()
    runner = train.build_runner(train.parse_args([config_path, '--work-dir', work_dir]))
    model = getattr(runner.model, 'module', runner.model)
    clock = IterationClock(model.data_preprocessor.pad_size_divisor or 1)
    runner.register_hook(clock, priority=clock.priority)
    runner.train()
    return dict(path=args.child, iterations=clock.rows,
                loop_s=clock.loop_end - clock.loop_begin,
                process_s=time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------------------------
def mean(values: List[float]) -> Optional[float]:
    return statistics.fmean(values) if values else None


def summarize(run: Dict, steady_from: int) -> Dict:
    """Means over the run's iterations: from ``steady_from`` on, of shapes seen before and of
    new shapes (the first iteration is the run's warm-up and counts in neither)."""
    rows = run['iterations']
    is_new = first_seen([row['shape'] for row in rows])
    repeated = [row['ms'] for row, n in zip(rows[1:], is_new[1:]) if not n]
    new = [row['ms'] for row, n in zip(rows[1:], is_new[1:]) if n]
    steady = rows[steady_from:]
    return dict(path=run['path'], iters=len(rows), loop_s=run['loop_s'],
                process_s=run['process_s'], shapes=sum(is_new),
                steady_ms=mean([r['ms'] for r in steady]),
                steady_median_ms=statistics.median([r['ms'] for r in steady]),
                steady_data_ms=mean([r['data_ms'] for r in steady]),
                seen_shape_ms=mean(repeated), seen_shape_iters=len(repeated),
                new_shape_ms=mean(new), new_shape_iters=len(new))


#: summary key -> its column in the table; the speed-up row compares these
COLUMNS = {'loop_s': 'training loop, s', 'steady_ms': 'mean iteration from --steady-from, ms',
           'steady_median_ms': 'median from --steady-from, ms',
           'steady_data_ms': 'of it waiting for data, ms',
           'seen_shape_ms': 'mean, batch shape seen before, ms',
           'new_shape_ms': 'mean, new batch shape, ms'}
SPEEDUP_KEYS = ('loop_s', 'steady_ms', 'steady_median_ms', 'seen_shape_ms', 'new_shape_ms')


def speedups(summaries: List[Dict]) -> Optional[Dict]:
    """mmdet's path over the hook's, per SPEEDUP_KEYS, when both ran."""
    by_path = {s['path']: s for s in summaries}
    if not {'mmdet', 'fast'} <= set(by_path):
        return None
    return {k: (by_path['mmdet'][k] / by_path['fast'][k]
                if by_path['mmdet'][k] and by_path['fast'][k] else None) for k in SPEEDUP_KEYS}


def table(summaries: List[Dict], speedup: Optional[Dict]) -> str:
    fmt = lambda v: '-' if v is None else f'{v:.1f}' if isinstance(v, float) else str(v)  # noqa
    header = ['path', 'iterations (shapes)'] + list(COLUMNS.values())
    lines = [[s['path'], f"{s['iters']} ({s['shapes']})"]
             + [fmt(s[k]) + (f" ({s[k.replace('_ms', '_iters')]})" if k.endswith('shape_ms')
                             else '') for k in COLUMNS] for s in summaries]
    if speedup:
        lines.append(['speed-up (mmdet / fast)', '']
                     + [f'{speedup[k]:.2f}x' if speedup.get(k) else '-' for k in COLUMNS])
    return markdown(header, lines)


def plan(args) -> Dict:
    """--plan-shapes: print the new batch shapes per 10 iterations."""
    shapes, epoch_starts = planned_shapes(path_config(args, args.paths[0]), args.iters)
    counts = new_shape_counts(shapes)
    last_new = max(i for i, new in enumerate(first_seen(shapes)) if new)
    print(markdown(['iterations', 'batches of a new padded shape'],
                   [[f'{10 * i + 1}-{min(10 * i + 10, len(shapes))}', str(n)]
                    for i, n in enumerate(counts)]))
    print(f'{sum(counts)} padded shapes in {len(shapes)} iterations; the '
          f'last new one at iteration {last_new + 1}; new epochs (each 2 s of mmengine\'s sleep) '
          f'at iterations {[i + 1 for i in epoch_starts] or "none"} (1-based)')
    return dict(shapes=shapes, new_per_10=counts, last_new_iteration=last_new + 1,
                epoch_starts=[i + 1 for i in epoch_starts])


def main(argv=None) -> Dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    if args.child:
        write_json(osp.join(args.work_dir, f'{args.child}.json'), run_path(args))
        return {}
    from tools.data import make_shapes_dataset as shapes
    if not osp.isfile(osp.join(args.data, 'meta.json')):  # any shapes data made before will do
        shapes.generate(args.data, num_train_cls=0, num_val_cls=0,
                        num_train_scenes=args.num_train, num_val_scenes=2, layout='coco',
                        workers=min(8, os.cpu_count() or 1))
    if args.plan_shapes:
        return plan(args)
    summaries = []
    for path in args.paths:
        log_path = osp.join(args.work_dir, f'{path}.log')
        print(f'[{path}] training {args.iters} iterations, log: {log_path}', flush=True)
        with open(log_path, 'w') as log:
            code = subprocess.call([sys.executable, osp.join(ROOT, SCRIPT), *argv,
                                    '--child', path], stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONUNBUFFERED='1'))
        if code:
            sys.exit(f'[{path}] training failed (exit {code}); the end of {log_path}:\n'
                     + check.log_tail(log_path))
        with open(osp.join(args.work_dir, f'{path}.json')) as f:
            run = json.load(f)
        summaries.append(summarize(run, args.steady_from))
        summaries[-1]['iterations'] = run['iterations']
        print(f"[{path}] loop {run['loop_s']:.1f} s, steady "
              f"{summaries[-1]['steady_ms']:.1f} ms an iteration", flush=True)
    speedup = speedups(summaries)
    text = table(summaries, speedup)
    env = dict(check.environment(argv), command=shlex.join(['python', SCRIPT] + argv),
               config=args.config, batch=args.batch, loader_workers=args.loader_workers,
               steady_from=args.steady_from)
    print('\n' + text)
    result = dict(env=env, summaries=summaries, speedup=speedup)
    write_json(args.out, result)
    Path(args.out).with_suffix('.md').write_text(
        f"{env['device']}, torch {env['torch']}, mmcv {env['mmcv']}, mmdet {env['mmdet']}, git "
        f"{env['git']}; {args.config}, batch {args.batch}, {args.loader_workers} loader "
        f"workers\n\n    {env['command']}\n\n{text}\n")
    return result


if __name__ == '__main__':
    main()
