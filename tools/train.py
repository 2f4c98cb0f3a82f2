"""Train any mmvminet config: mmpretrain classification, mmdet detection or mmseg segmentation.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--skip-bad-images]
                                 [--compile-backbone [MODE] [--compile-with-neck]]
                                 [--cfg-options data_root=PATH key=value ...]
    tools/dist_train.sh CONFIG GPUS [args]          # torchrun, one node or many

The library is chosen by the config's ``default_scope``; the loop, hooks and logging (iterations,
ETA, losses) are mmengine's. Every run also gets mmvminet's reliability hooks (exact resume,
stop on a NaN/inf loss, empty-dataset checks; docs/reliability.md), and errors the user can
fix from their message are printed as one line, ``error: ...``, with exit status 1.
"""
import argparse
import sys

import mmvminet  # noqa: F401  (stack fixes + registration before any MM model import)
import torch
from mmengine.device import get_device
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmvminet.errors import ReportableError
from mmvminet.hooks import CompileBackboneHook
from mmvminet.models import check_checkpoint_fits
from mmvminet.runner_utils import (DictAction, add_custom_hooks, check_data_paths,
                                   check_resume_checkpoint, default_work_dir, finish_distributed,
                                   init_distributed, load_config, log_distributed,
                                   prepare_distributed, resume_checkpoint,
                                   use_checked_image_loading, user_error_message)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/CONFIG_NAME)')
    parser.add_argument('--resume', nargs='?', const='auto', metavar='CKPT',
                        help='resume from CKPT, or from the latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision (fp16, dynamic '
                        'loss scaling)')
    parser.add_argument('--skip-bad-images', action='store_true',
                        help='skip training images that cannot be decoded (each is logged) '
                        'instead of stopping at the first')
    parser.add_argument('--compile-backbone', nargs='?', const='reduce-overhead', metavar='MODE',
                        choices=CompileBackboneHook.MODES,
                        help='train with the backbone compiled by torch.compile in MODE '
                        '(default reduce-overhead: CUDA graphs); for batches of one shape, '
                        'such as UperNet\'s crops')
    parser.add_argument('--compile-with-neck', action='store_true',
                        help='with --compile-backbone: compile the backbone and the neck '
                        'together (the model\'s extract_feat), one graph')
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
    notes = prepare_distributed(cfg, args.launcher, get_device())
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    if args.amp:
        if not torch.cuda.is_available():  # mmengine's AmpOptimWrapper asserts on it
            raise ReportableError('--amp trains in fp16 with loss scaling on a CUDA device; '
                                  'this machine has none')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    resume_from = resume_checkpoint(cfg.work_dir, args.resume) if args.resume else None
    if args.resume:  # None: nothing saved yet, a fresh start
        cfg.resume, cfg.load_from = resume_from is not None, resume_from
    add_custom_hooks(cfg, 'RNGStateHook', 'StopOnNonFiniteLossHook', 'CheckDatasetsHook')
    if cfg.optim_wrapper.get('type') == 'AmpOptimWrapper':
        add_custom_hooks(cfg, 'AmpOverflowHook')
    if args.compile_with_neck and not args.compile_backbone:
        raise ReportableError('--compile-with-neck goes with --compile-backbone [MODE]')
    if args.compile_backbone:
        add_custom_hooks(cfg, dict(type='CompileBackboneHook', mode=args.compile_backbone,
                                   with_neck=args.compile_with_neck))
    use_checked_image_loading(cfg, skip_bad=args.skip_bad_images)
    check_data_paths(cfg, ('train_dataloader', 'val_dataloader'))
    init_distributed(cfg, args.launcher, get_device())
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    log_distributed(runner, notes)
    # mmengine loads checkpoints non-strictly: another variant would only log warnings
    if resume_from:
        check_resume_checkpoint(runner.model, resume_from)
    elif cfg.get('load_from'):  # fine-tuning: the heads may differ, the backbone must fit
        check_checkpoint_fits(runner.model, cfg.load_from,
                              'backbone' if hasattr(runner.model, 'backbone') else None)
    return runner


def main(argv=None):
    args = parse_args(argv)
    try:
        build_runner(args).train()
    except Exception as e:
        message = user_error_message(e)
        if message is None:
            raise
        sys.exit(f'error: {message}')
    finish_distributed(end_process=True)


if __name__ == '__main__':
    main()
