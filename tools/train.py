"""Train any mmvminet config: mmpretrain classification, mmdet detection or mmseg segmentation.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                                 [--cfg-options data_root=PATH key=value ...]
    tools/dist_train.sh CONFIG GPUS [args]          # torchrun, one node or many

The library is chosen by the config's ``default_scope``; the loop, hooks and logging (iterations,
ETA, losses) are mmengine's.
"""
import argparse
import sys

import mmvminet  # noqa: F401  (stack fixes + registration before any MM model import)
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmvminet.models import CheckpointMismatchError
from mmvminet.runner_utils import (DataPathError, DictAction, check_data_paths,
                                   default_work_dir, load_config)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/CONFIG_NAME)')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (fp16, dynamic '
                        'loss scaling)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by total batch / the config\'s base_batch_size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config keys, e.g. data_root=data/coco '
                        'train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher (dist_train.sh sets pytorch)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0,
                        help=argparse.SUPPRESS)  # torch.distributed.launch compatibility
    return parser.parse_args(argv)


def build_runner(args) -> Runner:
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    check_data_paths(cfg, ('train_dataloader', 'val_dataloader'))
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def main(argv=None):
    args = parse_args(argv)
    try:
        runner = build_runner(args)
    except (DataPathError, FileNotFoundError, CheckpointMismatchError, ValueError) as e:
        sys.exit(f'error: {e}')
    runner.train()


if __name__ == '__main__':
    main()
