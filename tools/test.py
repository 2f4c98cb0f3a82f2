"""Evaluate a checkpoint with the library's own evaluator: top-1 (mmpretrain), COCO bbox/segm
mAP (mmdet) or mIoU (mmseg), chosen by the config's ``default_scope``.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--out PKL]
                         [--cfg-options data_root=PATH ...]
    tools/dist_test.sh CONFIG CHECKPOINT GPUS [args]

Prints the metrics and writes them to WORK_DIR/metrics.json. A checkpoint that does not fit
the config's model, and the other errors of docs/reliability.md, end the run with one line,
``error: ...``, and exit status 1.
"""
import argparse
import json
import os
import os.path as osp
import sys

import mmvminet  # noqa: F401  (stack fixes + registration before any MM model import)
from mmengine.device import get_device
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmvminet.errors import ReportableError
from mmvminet.models import check_checkpoint_fits
from mmvminet.runner_utils import (DictAction, add_custom_hooks, check_data_paths,
                                   default_work_dir, finish_distributed, init_distributed,
                                   load_config, log_distributed, prepare_distributed,
                                   use_checked_image_loading, user_error_message)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the log and metrics.json go')
    parser.add_argument('--show-dir', help='draw predictions into WORK_DIR/SHOW_DIR '
                        '(detection and segmentation)')
    parser.add_argument('--out', help='also pickle the predictions, one per test image in '
                        'dataset order (gathered from every process, padding dropped)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. data_root=data/coco')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_runner(args) -> Runner:
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint!r}')
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    notes = prepare_distributed(cfg, args.launcher, get_device())
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if args.show_dir:
        vis = cfg.default_hooks.get('visualization')
        if vis is None:
            raise ReportableError('--show-dir: this config has no visualization hook')
        vis.update(draw=True, interval=1, test_out_dir=args.show_dir)
        vis.pop('enable', None)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ReportableError(f'--out {args.out}: the predictions are pickled; name a .pkl')
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = evaluators + [dict(type='mmengine.DumpResults',
                                                out_file_path=args.out)]
    add_custom_hooks(cfg, 'CheckDatasetsHook')
    use_checked_image_loading(cfg)
    check_data_paths(cfg, ('test_dataloader', ))
    init_distributed(cfg, args.launcher, get_device())
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    log_distributed(runner, notes)
    # mmengine loads it non-strictly: another variant would only log warnings, then score ~0
    check_checkpoint_fits(runner.model, args.checkpoint)
    return runner


def main(argv=None):
    args = parse_args(argv)
    try:
        runner = build_runner(args)
        metrics = runner.test()
    except Exception as e:
        message = user_error_message(e)
        if message is None:
            raise
        sys.exit(f'error: {message}')
    if runner.rank == 0:
        metrics = {k: float(v) if hasattr(v, '__float__') else v for k, v in metrics.items()}
        print(json.dumps(metrics))
        os.makedirs(runner.work_dir, exist_ok=True)
        with open(osp.join(runner.work_dir, 'metrics.json'), 'w') as f:
            json.dump(metrics, f, indent=1)
    finish_distributed(end_process=True)
    return metrics


if __name__ == '__main__':
    main()
