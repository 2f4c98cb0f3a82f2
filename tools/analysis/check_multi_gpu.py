"""Check that training on 2 GPUs matches training on 1: loss curves, evaluation, checkpoints,
throughput; for the quickstart detection and segmentation configs.

    python tools/analysis/check_multi_gpu.py --out-dir OUT [--iters 60] [--gpus 2]
        [--tasks det seg] [--data-root data/shapes] [--pretrained CKPT|none] [--device cpu]

For each task it trains N iterations (a) in one process with batch GPUS*B and (b) with
``tools/dist_train.sh`` in GPUS processes with batch B each, from the same seed and sampler
order (iteration i sees the same images in both), then evaluates (b)'s checkpoint with
``tools/dist_test.sh``. It passes when

* the logged losses agree: the mean relative difference of the loss, averaged over windows of
  ``--window`` iterations, is below ``--loss-tol`` (5%). Per iteration they differ by more:
  augmentation and the heads' samplers draw from per-process RNGs, and without SyncBN each GPU
  normalises with its own batch statistics (``--no-sync-bn`` shows how much that adds). The
  logged loss of (b) is the mean over processes (``MeanLossAcrossRanksHook``), not rank 0's;
* the distributed evaluation predicted every test image exactly once;
* (b) wrote one checkpoint, once.

Writes OUT/report.json and OUT/report.md (a snippet for docs/benchmarks.md); exit status 1 when
a check fails. ``--device cpu`` runs the same with gloo processes (for testing this script).
"""
import argparse
import glob
import json
import os
import os.path as osp
import pickle
import platform
import shlex
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TASKS = {'det': ('configs/quickstart/mask_rcnn_vminet_ti_shapes.py', 'det'),
         'seg': ('configs/quickstart/upernet_vminet_ti_shapes.py', 'seg')}
PRETRAINED = 'checkpoints/quickstart/vminet_ti_shapes_cls.pth'
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
WARMUP_ITERS = 5  # left out of the throughput: cudnn autotuning, allocator, dataloader start


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--iters', type=int, default=60)
    parser.add_argument('--gpus', type=int, default=2, help='processes of run (b)')
    parser.add_argument('--tasks', nargs='+', choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument('--data-root', default='data/shapes',
                        help='the generated shapes dataset (det/ and seg/ inside)')
    parser.add_argument('--pretrained', default=PRETRAINED,
                        help="backbone checkpoint ('none', or missing: random init)")
    parser.add_argument('--batch', type=int,
                        help="per-process batch B of run (b) (default: the config's)")
    parser.add_argument('--window', type=int, default=10, help='iterations a loss average spans')
    parser.add_argument('--loss-tol', type=float, default=0.05)
    parser.add_argument('--no-sync-bn', action='store_true',
                        help="don't set sync_bn='torch' in run (b)")
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda')
    return parser.parse_args(argv)


# ---- reading and comparing runs (no GPU, no mm libraries) ------------------------------------

def read_scalars(work_dir):
    """{iteration: logged values} of a run's training lines in vis_data/scalars.json."""
    paths = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        raise FileNotFoundError(f'no */vis_data/scalars.json in {work_dir}')
    lines = {}
    with open(paths[-1]) as f:
        for line in f:
            entry = json.loads(line)
            if 'loss' in entry:
                lines[entry['iter']] = entry
    return lines


def window_means(values, window):
    return [sum(values[i:i + window]) / len(values[i:i + window])
            for i in range(0, len(values), window)]


def difference(a, b):
    """Max and mean absolute and relative (to ``a``) difference of two equal-length series."""
    abs_diff = [abs(x - y) for x, y in zip(a, b)]
    rel_diff = [d / max(abs(x), 1e-12) for d, x in zip(abs_diff, a)]
    return dict(max_abs=max(abs_diff), mean_abs=sum(abs_diff) / len(abs_diff),
                max_rel=max(rel_diff), mean_rel=sum(rel_diff) / len(rel_diff))


def compare_losses(single, multi, window):
    """How run (b)'s loss curve departs from run (a)'s, per logged iteration and averaged over
    windows of ``window`` iterations; both runs must have logged the same iterations."""
    if sorted(single) != sorted(multi) or not single:
        raise ValueError(f'the runs logged different iterations: {sorted(single)} vs '
                         f'{sorted(multi)}')
    iters = sorted(single)
    a, b = [single[i]['loss'] for i in iters], [multi[i]['loss'] for i in iters]
    return dict(iters=len(iters), first_loss=[a[0], b[0]], last_loss=[a[-1], b[-1]],
                per_iter=difference(a, b),
                windowed=difference(window_means(a, window), window_means(b, window)))


def images_per_second(scalars, total_batch, warmup=WARMUP_ITERS):
    """Training throughput from the logged seconds per iteration, warm-up left out."""
    warmup = min(warmup, len(scalars) // 2)  # short runs (tests) keep half
    times = [entry['time'] for i, entry in sorted(scalars.items()) if i > warmup]
    return total_batch * len(times) / sum(times)


def count_predictions(predictions, dataset_size):
    """Predictions of a gathered test run against the dataset's size: each image once?"""
    paths = [p['img_path'] for p in predictions]
    return dict(dataset=dataset_size, predictions=len(paths), unique=len(set(paths)),
                ok=len(paths) == len(set(paths)) == dataset_size)


def checkpoint_check(work_dir, log, iters):
    """Run (b) must leave exactly ``iter_N.pth`` (no temporary files) and log one save."""
    files = os.listdir(work_dir)
    pth = sorted(f for f in files if f.endswith('.pth'))
    saves = log.count(f'Saving checkpoint at {iters} iterations')
    tmp = [f for f in files if f.endswith('.tmp')]
    return dict(files=pth, saves_logged=saves, tmp_files=tmp,
                ok=pth == [f'iter_{iters}.pth'] and saves == 1 and not tmp)


# ---- running ---------------------------------------------------------------------------------

def run(cmd, env, log_path):
    """Run ``cmd`` in the repo; its output goes to ``log_path`` and is returned."""
    started = time.time()
    with open(log_path, 'w') as log:
        code = subprocess.call(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as f:
        output = f.read()
    if code != 0:
        raise RuntimeError(f'{shlex.join(cmd)} failed ({code}); last lines of {log_path}:\n'
                           + output[-3000:])
    return output, time.time() - started


def task_config(task, args, out_dir):
    """The quickstart config of ``task`` made an N-iteration run without validation, logging
    every iteration, saving only at the end; written to OUT/TASK/config.py."""
    sys.path.insert(0, ROOT)
    import mmvminet  # noqa: F401  (stack fixes, registration)
    from mmvminet.runner_utils import load_config
    base, sub = TASKS[task]
    cfg = load_config(osp.join(ROOT, base), {'data_root': osp.join(args.data_root, sub)})
    pretrained = args.pretrained if osp.isfile(args.pretrained) else None
    cfg.model.backbone.init_cfg = dict(cfg.model.backbone.init_cfg, checkpoint=pretrained) \
        if pretrained else None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                                end=min(50, args.iters))]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1, log_metric_by_epoch=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=args.iters, max_keep_ckpts=1)
    cfg.log_processor = dict(type='LogProcessor', window_size=1, by_epoch=False)
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(type='MeanLossAcrossRanksHook')]
    cfg.train_dataloader.sampler.seed = 0  # the same order whatever the world size
    cfg.randomness = dict(seed=0)  # not deterministic=True: mmcv's CUDA RoIAlign has no such mode
    pipeline = cfg.test_dataloader.dataset.pipeline
    if cfg.default_scope == 'mmdet' and not any(t['type'] == 'Resize' for t in pipeline):
        # mmdet's mask head rescales by the scale_factor only Resize sets
        pipeline.insert(1, dict(type='Resize', scale_factor=1.0, keep_ratio=True))
    path = osp.join(out_dir, 'config.py')
    cfg.dump(path)
    return cfg, path


def dataset_size(cfg):
    ds = cfg.test_dataloader.dataset
    prefix = ds.data_prefix.get('img', ds.data_prefix.get('img_path'))
    folder = osp.join(ds.data_root, prefix)
    return sum(f.lower().endswith(IMAGE_SUFFIXES) for f in os.listdir(folder))


def check_task(task, args, env):
    out_dir = osp.join(args.out_dir, task)
    os.makedirs(out_dir, exist_ok=True)
    cfg, config = task_config(task, args, out_dir)
    batch = args.batch or cfg.train_dataloader.batch_size
    python = sys.executable
    single_dir, multi_dir = osp.join(out_dir, 'gpus1'), osp.join(out_dir, f'gpus{args.gpus}')
    single_env = dict(env, CUDA_VISIBLE_DEVICES='0' if args.device == 'cuda' else '')
    _, single_s = run([python, 'tools/train.py', config, '--work-dir', single_dir,
                       '--cfg-options', f'train_dataloader.batch_size={batch * args.gpus}'],
                      single_env, osp.join(out_dir, 'gpus1.log'))
    options = [f'train_dataloader.batch_size={batch}']
    if not args.no_sync_bn:
        options.append('sync_bn=torch')
    multi_log, multi_s = run(['bash', 'tools/dist_train.sh', config, str(args.gpus),
                              '--work-dir', multi_dir, '--cfg-options', *options], env,
                             osp.join(out_dir, f'gpus{args.gpus}.log'))
    checkpoint = osp.join(multi_dir, f'iter_{args.iters}.pth')
    predictions = osp.join(out_dir, 'test', 'predictions.pkl')
    run(['bash', 'tools/dist_test.sh', config, checkpoint, str(args.gpus), '--work-dir',
         osp.join(out_dir, 'test'), '--out', predictions], env, osp.join(out_dir, 'test.log'))
    with open(predictions, 'rb') as f:
        evaluation = count_predictions(pickle.load(f), dataset_size(cfg))
    with open(osp.join(out_dir, 'test', 'metrics.json')) as f:
        evaluation['metrics'] = json.load(f)
    single, multi = read_scalars(single_dir), read_scalars(multi_dir)
    losses = compare_losses(single, multi, args.window)
    losses['ok'] = losses['windowed']['mean_rel'] < args.loss_tol
    ips = [images_per_second(single, batch * args.gpus),
           images_per_second(multi, batch * args.gpus)]
    return dict(config=TASKS[task][0], batch_per_gpu=[batch * args.gpus, batch],
                sync_bn='SyncBN does not run' not in multi_log and not args.no_sync_bn,
                losses=losses, evaluation=evaluation,
                checkpoint=checkpoint_check(multi_dir, multi_log, args.iters),
                throughput=dict(images_per_s=ips, speedup=ips[1] / ips[0],
                                scaling_efficiency=ips[1] / ips[0] / args.gpus),
                wall_s=[round(single_s), round(multi_s)])


def environment(args):
    import torch
    versions = {'python': platform.python_version(), 'torch': torch.__version__,
                'cuda': torch.version.cuda}
    for name in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
        versions[name] = __import__(name).__version__
    device = (f'{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}'
              if args.device == 'cuda' and torch.cuda.is_available() else platform.processor()
              or 'cpu')
    return dict(device=device, versions=versions, command=shlex.join(sys.argv),
                pretrained=args.pretrained if osp.isfile(args.pretrained) else 'random init')


def markdown(report):
    env, args = report['environment'], report['args']
    gpus = args['gpus']
    lines = [f"### {gpus}-GPU check ({env['device']})", '',
             f"`{env['command']}`  ", ', '.join(f'{k} {v}' for k, v in env['versions'].items()),
             f"; backbone: {env['pretrained']}; {args['iters']} iterations, seed 0.", '',
             f'| task | batch 1 GPU / {gpus} GPUs x | loss mean rel. diff (window {args["window"]}'
             f' / per iter) | eval images (dataset) | checkpoints | img/s 1 GPU | img/s {gpus} '
             'GPUs | speedup | pass |', '|---|---|---|---|---|---|---|---|---|']
    for task, r in report['tasks'].items():
        if 'error' in r:
            lines.append(f"| {task} | error: {r['error'].splitlines()[0]} |||||||| no |")
            continue
        loss, ev, tp = r['losses'], r['evaluation'], r['throughput']
        lines.append(
            f"| {task}{' (sync_bn)' if r['sync_bn'] else ''} | {r['batch_per_gpu'][0]} / "
            f"{r['batch_per_gpu'][1]} | {loss['windowed']['mean_rel']:.1%} / "
            f"{loss['per_iter']['mean_rel']:.1%} | {ev['unique']} of {ev['predictions']} "
            f"({ev['dataset']}) | {', '.join(r['checkpoint']['files'])} | "
            f"{tp['images_per_s'][0]:.1f} | {tp['images_per_s'][1]:.1f} | {tp['speedup']:.2f}x | "
            f"{'yes' if r['ok'] else 'no'} |")
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    args.out_dir, args.data_root = osp.abspath(args.out_dir), osp.abspath(args.data_root)
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=ROOT)
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    report = dict(args=vars(args), environment=environment(args), tasks={})
    for task in args.tasks:
        print(f'[{task}] training 1 and {args.gpus} processes, then testing ...', flush=True)
        try:
            result = check_task(task, args, env)
            result['ok'] = all(result[k]['ok'] for k in ('losses', 'evaluation', 'checkpoint'))
        except RuntimeError as e:  # a failed run: report it, go on with the next task
            result = dict(error=str(e), ok=False)
        report['tasks'][task] = result
    report['ok'] = all(r['ok'] for r in report['tasks'].values())
    with open(osp.join(args.out_dir, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(osp.join(args.out_dir, 'report.md'), 'w') as f:
        f.write(text)
    print(text)
    return 0 if report['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
