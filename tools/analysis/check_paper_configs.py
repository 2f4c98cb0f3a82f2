"""Do the paper configs learn as well as the libraries' own baselines? Train them side by side.

    python tools/analysis/check_paper_configs.py [--work-dir work_dirs/check_paper_configs]
        [--data data/shapes_coco] [--models all|NAMES] [--arch s] [--det-iters 800]
        [--seg-iters 4000] [--batch 2] [--lr 2e-4] [--weight-decay 0.05] [--warmup 100]
        [--num-train 800] [--num-val 50] [--data-workers 8] [--time-limit MINUTES]
        [--checkpoint-every 100] [--resume] [--out check_paper_configs.json]

Generates COCO-resolution scenes with tools/data/make_shapes_dataset.py (``--layout coco``:
COCO-sized images of 3-14 overlapping shapes of all three COCO size ranges; the same images as a
COCO instance set and as label maps, 5 classes + background), then trains every model at once on
this machine's one GPU, each through ``tools/train.py`` in its own process, and prints one table
of bbox / segm mAP (COCO's, on the val images) and mIoU (%), each model against its library's
stock R-50 model.

Models (--models, comma separated; default all six):

* mask_rcnn_vminet: ``configs/mask_rcnn_vminet_{arch}_1x.py``, the paper's detector (simple
  pyramid on the last map);
* mask_rcnn_r50, mask_rcnn_swin_t: mmdet's ``mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py`` and
  ``swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py``;
* upernet_vminet: ``configs/upernet_vminet_{arch}_160k_ade20k.py``, the paper's segmentor;
* upernet_r50, upernet_swin_t: mmseg's ``upernet/upernet_r50_4xb4-160k_ade20k-512x512.py`` and
  ``swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py``.

Every model keeps its config's network, data pipeline (Mask R-CNN: resize to 1333x800 and flip;
UperNet: random resize, 512x512 crop, flip, photometric distortion) and optimizer parameter
groups (paramwise_cfg), and gets the same everything else: from scratch (no pretrained weights,
no frozen stages, BatchNorm statistics updated), SyncBN as BN, --batch images per step, AdamW at
--lr and --weight-decay, a linear warm-up over --warmup iterations, lr x0.1 at 75% and 90% of the
iterations, fp16 AMP with dynamic loss scaling on CUDA (fp32 on the CPU, for smoke tests), seed 0,
one validation at the end. The prepared configs are written to WORK/NAME/config.py, the logs to
WORK/NAME.log.

The table and the rows (metrics, ratio to the baseline, final training loss, seconds per
iteration) go to --out (JSON) and --out with .md, with the device, the versions and the command.
A run that fails, or that --time-limit stops, is reported in its row (a failure with the end of
its log) and fails the command (exit 1). Under --time-limit every run saves a checkpoint each
--checkpoint-every iterations, and a stopped run is evaluated at its last one (tools/test.py),
its row saying so: a cut schedule, for a look at how far each got, not a verdict. --resume
then goes on where such a command stopped (on a machine lent for a fixed time, the next call):
a run that finished is reported as it is, a run with a checkpoint continues from it
(``tools/train.py --resume``: same schedule, same data order), the others start over. A run whose
last checkpoint is its schedule's last iteration but that has no metrics (stopped during its final
validation) is not trained again: it is evaluated at that checkpoint with tools/test.py, and its
row is a whole run ("ok, evaluated at iter N by tools/test.py").
"""
import argparse
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mmengine.config import Config  # noqa: E402

from tools.analysis.benchmark import comma_list, fmt, write_json  # noqa: E402
from tools.analysis.benchmark_dense import DenseSpec, markdown, resolve_config  # noqa: E402
from tools.data import make_shapes_dataset as shapes  # noqa: E402

SCRIPT = 'tools/analysis/check_paper_configs.py'
SEG_CLASSES = ('background', ) + shapes.CLASSES
SEG_PALETTE = [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
               [245, 130, 48]]


#: the models of the check; ours name ``{ARCH}`` / ``{arch}``, filled from --arch
MODELS = {
    'mask_rcnn_vminet': DenseSpec('Mask R-CNN VMINet-{ARCH} (paper)', 'det',
                                  'configs/mask_rcnn_vminet_{arch}_1x.py'),
    'mask_rcnn_r50': DenseSpec('Mask R-CNN R-50 (mmdet)', 'det',
                               'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'),
    'mask_rcnn_swin_t': DenseSpec('Mask R-CNN Swin-T (mmdet)', 'det',
                                  'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'),
    'upernet_vminet': DenseSpec('UperNet VMINet-{ARCH} (paper)', 'seg',
                                'configs/upernet_vminet_{arch}_160k_ade20k.py'),
    'upernet_r50': DenseSpec('UperNet R-50 (mmseg)', 'seg',
                             'mmseg::upernet/upernet_r50_4xb4-160k_ade20k-512x512.py'),
    'upernet_swin_t': DenseSpec(
        'UperNet Swin-T (mmseg)', 'seg',
        'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'),
}
#: task -> the model the others are compared with, and the metric compared
BASELINES = {'det': 'mask_rcnn_r50', 'seg': 'upernet_r50'}
METRICS = {'det': 'coco/bbox_mAP', 'seg': 'mIoU'}
#: the paper configs must reach this share of the baseline's metric
TARGET = 0.9


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/check_paper_configs')
    parser.add_argument('--data', default='data/shapes_coco',
                        help='COCO-layout shapes data (made there if missing)')
    parser.add_argument('--models', default='all',
                        help=f'comma separated, of: {", ".join(MODELS)} (default all)')
    parser.add_argument('--arch', default='s', choices=['xs', 's', 'b'],
                        help='VMINet variant of the paper configs')
    parser.add_argument('--det-iters', type=int, default=800)
    # at 800 (the detectors' budget) no segmentor learnt more than the background and a class or
    # two on the H100 (docs/paper_configs.md): too few to tell them apart
    parser.add_argument('--seg-iters', type=int, default=4000)
    parser.add_argument('--batch', type=int, default=2, help='images per training step')
    parser.add_argument('--lr', type=float, default=2e-4)
    parser.add_argument('--weight-decay', type=float, default=0.05)
    parser.add_argument('--warmup', type=int, default=100, help='linear warm-up iterations')
    parser.add_argument('--num-train', type=int, default=800, help='training scenes')
    parser.add_argument('--num-val', type=int, default=50, help='validation scenes')
    parser.add_argument('--data-workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='processes drawing the scenes')
    parser.add_argument('--loader-workers', type=int, default=2,
                        help='dataloader workers of each training run')
    parser.add_argument('--time-limit', type=float, default=None, metavar='MINUTES',
                        help='stop the runs still training after MINUTES and evaluate each at '
                        'its last checkpoint (for machines lent for a fixed time)')
    parser.add_argument('--checkpoint-every', type=int, default=100, metavar='ITERS',
                        help='with --time-limit, each run saves its checkpoint this often')
    parser.add_argument('--resume', action='store_true',
                        help='go on with the runs of --work-dir that an earlier command left')
    parser.add_argument('--out', default='check_paper_configs.json')
    args = parser.parse_args(argv)
    try:
        args.models = (list(MODELS) if args.models == 'all'
                       else comma_list(args.models, MODELS, 'model'))
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    for key in ('det_iters', 'seg_iters', 'batch', 'num_train', 'num_val', 'data_workers',
                'checkpoint_every'):
        if getattr(args, key) < 1:
            parser.error(f'--{key.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


# ----------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------
def model_config_path(key: str, arch: str) -> str:
    return resolve_config(MODELS[key].config.format(arch=arch))


def model_name(key: str, arch: str) -> str:
    return MODELS[key].name.format(ARCH=arch.upper())


def from_scratch(model: dict):
    """No pretrained weights, nothing frozen, BN statistics updated (edits ``model``)."""
    model.backbone.init_cfg = None
    if 'pretrained' in model:
        model.pretrained = None
    for key, value in (('frozen_stages', -1), ('norm_eval', False)):
        if key in model.backbone:
            model.backbone[key] = value


def det_data(cfg: Config, data: str, batch: int, loader_workers: int):
    root = osp.join(data, 'det')
    metainfo = dict(classes=shapes.CLASSES)
    for split, loader, train in (('train', cfg.train_dataloader, True),
                                 ('val', cfg.val_dataloader, False)):
        loader.dataset.update(type='CocoDataset', data_root=root, metainfo=metainfo,
                              ann_file=f'annotations/instances_{split}.json',
                              data_prefix=dict(img=f'{split}/'))
        loader.update(batch_size=batch if train else 1, num_workers=loader_workers,
                      persistent_workers=loader_workers > 0)
    cfg.val_evaluator.update(ann_file=osp.join(root, 'annotations', 'instances_val.json'),
                             metric=['bbox', 'segm'])
    roi_head = cfg.model.roi_head
    roi_head.bbox_head.num_classes = roi_head.mask_head.num_classes = len(shapes.CLASSES)


def seg_data(cfg: Config, data: str, batch: int, loader_workers: int):
    root = osp.join(data, 'seg')
    metainfo = dict(classes=SEG_CLASSES, palette=SEG_PALETTE)
    for split, loader, train in (('training', cfg.train_dataloader, True),
                                 ('validation', cfg.val_dataloader, False)):
        dataset = loader.dataset
        for step in dataset.pipeline:  # label 0 is the background class here, not 'ignore'
            if step['type'] == 'LoadAnnotations':
                step['reduce_zero_label'] = False
        dataset.update(type='BaseSegDataset', data_root=root, metainfo=metainfo,
                       img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=False,
                       data_prefix=dict(img_path=f'images/{split}',
                                        seg_map_path=f'annotations/{split}'))
        loader.update(batch_size=batch if train else 1, num_workers=loader_workers,
                      persistent_workers=loader_workers > 0)
    for head in ('decode_head', 'auxiliary_head'):
        cfg.model[head].num_classes = len(SEG_CLASSES)


def schedule(cfg: Config, iters: int, args, cuda: bool):
    """The budget and optimizer every model of the check shares."""
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.val_cfg, cfg.test_cfg = dict(type='ValLoop'), dict(type='TestLoop')
    cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0,
             end=min(args.warmup, iters)),
        dict(type='MultiStepLR', by_epoch=False, begin=0, end=iters, gamma=0.1,
             milestones=[int(0.75 * iters), int(0.9 * iters)]),
    ]
    wrapper = {k: cfg.optim_wrapper[k] for k in ('constructor', 'paramwise_cfg')
               if k in cfg.optim_wrapper}
    wrapper['optimizer'] = dict(type='AdamW', lr=args.lr, betas=(0.9, 0.999),
                                weight_decay=args.weight_decay)
    if cfg.optim_wrapper.optimizer.get('fused'):  # the config's implementation of the update
        wrapper['optimizer']['fused'] = True
    if cuda:  # AmpOptimWrapper needs an accelerator; mmcv's RoIAlign has no bf16 kernel
        wrapper.update(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
    else:
        wrapper['type'] = 'OptimWrapper'
    cfg.optim_wrapper = wrapper
    cfg.pop('auto_scale_lr', None)
    # under a time limit a stopped run is evaluated at its last checkpoint (run_all)
    every = min(iters, args.checkpoint_every) if args.time_limit else iters
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=every,
                                        max_keep_ckpts=1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=min(50, iters),
                                    log_metric_by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=0)


def prepare_config(key: str, args, cuda: bool) -> Config:
    """The model's config with the check's data, budget and optimizer."""
    task = MODELS[key].task
    cfg = Config.fromfile(model_config_path(key, args.arch))
    from_scratch(cfg.model)
    (det_data if task == 'det' else seg_data)(cfg, args.data, args.batch, args.loader_workers)
    schedule(cfg, args.det_iters if task == 'det' else args.seg_iters, args, cuda)
    return cfg


# ----------------------------------------------------------------------------------------------
# Runs and their results
# ----------------------------------------------------------------------------------------------
ITER_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?eta: (\S+).*?loss: ([0-9.naninf]+)')


def progress(log_path: str) -> str:
    """'iter I/N, loss L, eta E' from the last training line of a run's log, or ''."""
    if not osp.isfile(log_path):
        return ''
    with open(log_path, errors='replace') as f:
        matches = ITER_LINE.findall(f.read())
    if not matches:
        return ''
    it, total, eta, loss = matches[-1]
    return f'iter {it}/{total}, loss {loss}, eta {eta}'


def read_scalars(work_dir: str) -> List[Dict]:
    """The records of mmengine's LocalVisBackend (``*/vis_data/scalars.json``) of a run, the
    newest run of the work dir."""
    found = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    if not found:
        return []
    with open(found[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize_run(task: str, records: List[Dict]) -> Dict:
    """Final metrics, final training loss (mean of the last 3 logged) and s/iter of a run."""
    row: Dict[str, Optional[float]] = {}
    metric_keys = {'det': ('coco/bbox_mAP', 'coco/segm_mAP'), 'seg': ('mIoU', )}[task]
    evaluated = [r for r in records if METRICS[task] in r]
    for key in metric_keys:
        row[key] = evaluated[-1].get(key) if evaluated else None
    train = [r for r in records if 'loss' in r and METRICS[task] not in r]
    losses = [r['loss'] for r in train[-3:]]
    row['final_loss'] = sum(losses) / len(losses) if losses else None
    times = [r['time'] for r in train[1:] if 'time' in r]  # the first interval holds start-up
    row['s_per_iter'] = sum(times) / len(times) if times else None
    row['iters'] = train[-1].get('iter', train[-1].get('step')) if train else None
    return row


def add_ratios(rows: List[Dict]):
    """Each row's metric over its task's baseline's (``vs_baseline``)."""
    by_key = {r['key']: r for r in rows}
    for row in rows:
        base = by_key.get(BASELINES[row['task']])
        value, ref = row.get(METRICS[row['task']]), base and base.get(METRICS[row['task']])
        row['vs_baseline'] = value / ref if value is not None and ref else None


def results_table(rows: List[Dict]) -> str:
    header = ['model', 'config', 'bbox mAP', 'segm mAP', 'mIoU %', 'vs R-50 baseline',
              'final loss', 's/iter', 'status']
    lines = [[r['name'], r['config'], fmt(r.get('coco/bbox_mAP'), 3),
              fmt(r.get('coco/segm_mAP'), 3), fmt(r.get('mIoU'), 2),
              '-' if r.get('vs_baseline') is None else f"{r['vs_baseline']:.2f}x",
              fmt(r.get('final_loss'), 3), fmt(r.get('s_per_iter'), 3), r['status']]
             for r in rows]
    return markdown(header, lines)


def verdicts(rows: List[Dict]) -> List[str]:
    """One line per paper config: its ratio to the baseline against TARGET."""
    lines = []
    for row in rows:
        if not row['key'].endswith('_vminet'):  # the paper configs only
            continue
        ratio = row.get('vs_baseline')
        if ratio is None:
            lines.append(f"{row['name']}: no ratio (a run failed or the baseline did not run)")
        else:
            met = 'met' if ratio >= TARGET else 'NOT met'
            cut = '' if whole_run(row) else f" (not a whole run: {row['status']})"
            lines.append(f"{row['name']}: {ratio:.2f}x the {METRICS[row['task']]} of "
                         f"{MODELS[BASELINES[row['task']]].name}, target {TARGET}x {met}{cut}")
    return lines


def environment(argv: List[str]) -> Dict:
    import mmcv
    import mmdet
    import mmengine
    import mmseg
    import torch
    rev = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, text=True,
                         capture_output=True).stdout.strip()
    return {
        'device': torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu',
        'torch': torch.__version__, 'mmcv': mmcv.__version__, 'mmengine': mmengine.__version__,
        'mmdet': mmdet.__version__, 'mmseg': mmseg.__version__, 'python': sys.version.split()[0],
        'git': rev, 'command': shlex.join(['python', SCRIPT] + argv),
    }


def log_tail(path: str, lines: int = 15) -> str:
    if not osp.isfile(path):
        return ''
    with open(path, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


def child(args: List[str], log_path: str, append: bool = False) -> subprocess.Popen:
    """A tool of this repo in its own process, its output into ``log_path``."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    with open(log_path, 'a' if append else 'w') as log:  # the child keeps its own copy
        return subprocess.Popen([sys.executable] + args, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=env)


def launch(key: str, cfg: Config, work_dir: str, resume: bool = False) -> subprocess.Popen:
    """``tools/train.py`` of the prepared config; with ``resume``, from the run's last
    checkpoint, its log appended to."""
    run_dir = osp.join(work_dir, key)
    os.makedirs(run_dir, exist_ok=True)
    config_path = osp.join(run_dir, 'config.py')
    cfg.dump(config_path)
    return child([str(ROOT / 'tools' / 'train.py'), config_path, '--work-dir', run_dir]
                 + (['--resume'] if resume else []), osp.join(work_dir, f'{key}.log'),
                 append=resume)


def last_checkpoint(run_dir: str) -> Optional[str]:
    """The checkpoint mmengine's CheckpointHook saved last in ``run_dir``, or None."""
    pointer = osp.join(run_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    return path if osp.isfile(path) else None


def checkpoint_iter(path: Optional[str]) -> Optional[int]:
    """The iteration of an ``iter_N.pth`` checkpoint, or None."""
    match = re.search(r'iter_(\d+)\.pth$', path or '')
    return int(match.group(1)) if match else None


def finished(key: str, cfg: Config, work_dir: str) -> bool:
    """Did an earlier command train this run to its end and evaluate it?"""
    return (trained_to_end(key, cfg, work_dir) and any(
        METRICS[MODELS[key].task] in r for r in read_scalars(osp.join(work_dir, key))))


def trained_to_end(key: str, cfg: Config, work_dir: str) -> bool:
    """Is this run's last checkpoint the last iteration of its schedule?"""
    return checkpoint_iter(last_checkpoint(osp.join(work_dir, key))) == cfg.train_cfg.max_iters


def whole_run(row: Dict) -> bool:
    """Was this row's model trained through its whole schedule and evaluated at its end?"""
    return row['status'].startswith('ok')


def evaluate_stopped(keys: List[str], work_dir: str) -> Dict[str, Dict]:
    """Each run stopped by --time-limit evaluated at its last checkpoint, with tools/test.py,
    all at once: key -> its metrics and the checkpoint's iteration (runs with no checkpoint
    are left out)."""
    procs = {}
    for key in keys:
        run_dir = osp.join(work_dir, key)
        checkpoint = last_checkpoint(run_dir)
        if checkpoint is not None:
            eval_dir = osp.join(run_dir, 'eval_at_stop')
            procs[key] = (checkpoint, eval_dir, child(
                [str(ROOT / 'tools' / 'test.py'), osp.join(run_dir, 'config.py'), checkpoint,
                 '--work-dir', eval_dir], osp.join(work_dir, f'{key}.eval.log')))
    if procs:
        print(f'evaluating {", ".join(procs)} at their last checkpoints', flush=True)
    found = {}
    for key, (checkpoint, eval_dir, proc) in procs.items():
        metrics_path = osp.join(eval_dir, 'metrics.json')
        if proc.wait() == 0 and osp.isfile(metrics_path):
            with open(metrics_path) as f:
                metrics = json.load(f)
            found[key] = dict(metrics, evaluated_iter=checkpoint_iter(checkpoint))
    return found


def run_all(args, cuda: bool) -> List[Dict]:
    configs = {key: prepare_config(key, args, cuda) for key in args.models}
    done = {key for key, cfg in configs.items()
            if args.resume and finished(key, cfg, args.work_dir)}
    if done:
        print(f'finished by an earlier command: {", ".join(sorted(done))}', flush=True)
    # resumed, such a run would only skip its data (minutes) and end without a validation
    unevaluated = {key for key, cfg in configs.items() if args.resume and key not in done
                   and trained_to_end(key, cfg, args.work_dir)}
    if unevaluated:
        print(f'trained to the end by an earlier command, not evaluated: '
              f'{", ".join(sorted(unevaluated))} (tools/test.py at the last checkpoint)',
              flush=True)
    to_train = [key for key in configs if key not in done | unevaluated]
    resumable = {key for key in to_train
                 if args.resume and last_checkpoint(osp.join(args.work_dir, key)) is not None}
    from_start = sorted(set(to_train) - resumable)
    if args.resume and from_start:
        print(f'no checkpoint to resume from, trained from the start: {", ".join(from_start)}',
              flush=True)
    procs = {key: launch(key, configs[key], args.work_dir, key in resumable) for key in to_train}
    print(f'training {len(procs)} models at once: {", ".join(procs)} (logs: {args.work_dir}/'
          'NAME.log)', flush=True)
    started = time.time()
    stopped = set()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(min(30.0, 1.0 + 0.1 * (time.time() - started)))
        states = [f'{key}: ' + (progress(osp.join(args.work_dir, f'{key}.log')) or 'starting')
                  if p.poll() is None else f'{key}: exited {p.returncode}'
                  for key, p in procs.items()]
        print(f'[{time.time() - started:5.0f} s] ' + '; '.join(states), flush=True)
        if args.time_limit and time.time() - started > 60 * args.time_limit:
            for key, proc in procs.items():
                if proc.poll() is None:  # the table still comes, with how far each run got
                    proc.terminate()
                    stopped.add(key)
            for proc in procs.values():
                proc.wait()
    at_stop = evaluate_stopped(sorted(stopped | unevaluated), args.work_dir)
    rows = []
    for key in configs:
        proc, task = procs.get(key), MODELS[key].task
        row = {'key': key, 'name': model_name(key, args.arch), 'task': task,
               'config': MODELS[key].config.format(arch=args.arch),
               **summarize_run(task, read_scalars(osp.join(args.work_dir, key)))}
        ok = ((key in done or (proc is not None and proc.returncode == 0))
              and row.get(METRICS[task]) is not None)
        evaluated_iter = at_stop.get(key, {}).get('evaluated_iter')
        if not ok and key in at_stop:  # evaluated at its last checkpoint by tools/test.py
            row.update({k: at_stop[key][k] for k in row if k in at_stop[key]})
        if ok:
            row['status'] = 'ok'
        elif evaluated_iter == configs[key].train_cfg.max_iters:  # a whole run all the same
            row['status'] = f'ok, evaluated at iter {evaluated_iter} by tools/test.py'
            ok = True
        elif key in stopped:
            row['status'] = f"stopped at --time-limit, iter {row['iters']}"
            if key in at_stop:  # its schedule was cut short: not comparable with a whole run
                row['status'] += f'; evaluated at iter {evaluated_iter}'
        elif key in unevaluated:
            row['status'] = 'failed (tools/test.py at its last checkpoint)'
        else:
            row['status'] = f"failed (exit {proc.returncode if proc else 'before this command'})"
        if not ok and key not in stopped:
            log = f'{key}.eval.log' if key in unevaluated else f'{key}.log'
            row['log_tail'] = log_tail(osp.join(args.work_dir, log))
        rows.append(row)
    add_ratios(rows)
    return rows


def main(argv=None) -> Dict:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import torch
    cuda = torch.cuda.is_available()
    shapes.generate(args.data, num_train_cls=0, num_val_cls=0, num_train_scenes=args.num_train,
                    num_val_scenes=args.num_val, layout='coco', workers=args.data_workers)
    os.makedirs(args.work_dir, exist_ok=True)
    rows = run_all(args, cuda)
    report = {'env': environment(argv), 'settings': {
        k: getattr(args, k) for k in ('arch', 'det_iters', 'seg_iters', 'batch', 'lr',
                                      'weight_decay', 'warmup', 'num_train', 'num_val')},
        'rows': rows, 'verdicts': verdicts(rows)}
    table = results_table(rows)
    print('\n' + table + '\n\n' + '\n'.join(report['verdicts']))
    for row in rows:
        if row.get('log_tail'):
            print(f"\n--- {row['key']} failed; the end of its log:\n{row['log_tail']}")
    out = Path(args.out)
    write_json(str(out), report)
    env = report['env']
    out.with_suffix('.md').write_text(
        f"{env['device']}, torch {env['torch']}, mmcv {env['mmcv']}, mmdet {env['mmdet']}, "
        f"mmseg {env['mmseg']}, git {env['git']}\n\n    {env['command']}\n\n{table}\n\n"
        + '\n'.join(report['verdicts']) + '\n')
    if not all(whole_run(r) for r in rows):
        sys.exit(1)
    return report


if __name__ == '__main__':
    main()
