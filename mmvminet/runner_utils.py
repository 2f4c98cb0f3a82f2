"""What tools/train.py and tools/test.py share: load a config of any of the three libraries,
apply command-line overrides, check the data paths before minutes are spent building things,
add the reliability hooks, fit distributed settings to the machine, and turn the errors a user
can fix into one line.
"""
import datetime
import logging
import os
import os.path as osp
import re
import sys
import traceback
from typing import List, Optional, Union

from mmengine.config import Config, ConfigDict, DictAction  # noqa: F401 (DictAction re-exported)

from .errors import ReportableError
from .models.checkpoint import CheckpointReadError, check_checkpoint_fits

SCOPES = ('mmpretrain', 'mmdet', 'mmseg')
PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


class DataPathError(ReportableError, FileNotFoundError):
    """A dataset path in the config that does not exist."""


def config_scope(cfg: Config) -> str:
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ValueError(f'config sets default_scope={scope!r}; mmvminet tools run '
                         f'{", ".join(SCOPES)} configs')
    return scope


def _dataset_cfgs(cfg: Config):
    """(dataloader name, dataset cfg) of every dataloader, wrappers (RepeatDataset...) opened."""
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if not loader:
            continue
        stack = [loader.get('dataset')]
        while stack:
            ds = stack.pop()
            if isinstance(ds, (list, tuple)):
                stack.extend(ds)
            elif isinstance(ds, dict):
                if 'dataset' in ds or 'datasets' in ds:
                    stack.append(ds.get('dataset', ds.get('datasets')))
                else:
                    yield name, ds


def set_data_root(cfg: Config, data_root: str):
    """Point every dataset (and COCO evaluators' ann_file) at ``data_root``.

    ``--cfg-options data_root=X`` alone would not do it: mmengine substitutes the base file's
    ``data_root`` into the datasets when the config is parsed, before overrides apply.
    """
    old = cfg.get('data_root')
    cfg.data_root = data_root
    for _, ds in _dataset_cfgs(cfg):
        ds['data_root'] = data_root
    for name in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(name)
        for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            if isinstance(ev, dict) and isinstance(ev.get('ann_file'), str) and old:
                ann = ev['ann_file']
                if ann.startswith(old.rstrip('/') + '/'):
                    ev['ann_file'] = osp.join(data_root, ann[len(old.rstrip('/')) + 1:])


def check_data_paths(cfg: Config, splits=('train_dataloader', 'val_dataloader',
                                          'test_dataloader')):
    """Raise ``DataPathError`` naming the first dataset path that does not exist."""
    for name, ds in _dataset_cfgs(cfg):
        if name not in splits:
            continue
        root = ds.get('data_root') or ''
        if root and not osp.isdir(root):
            raise DataPathError(f'{name}: data_root {root!r} does not exist (set it with '
                                f'--cfg-options data_root=PATH)')
        paths = []
        if ds.get('ann_file'):
            paths.append(osp.join(root, ds['ann_file']))
        prefix = ds.get('data_prefix')
        if isinstance(prefix, dict):
            paths += [osp.join(root, p) for p in prefix.values() if isinstance(p, str) and p]
        elif isinstance(prefix, str) and prefix:
            paths.append(osp.join(root, prefix))
        for path in paths:
            if not osp.exists(path):
                raise DataPathError(f'{name}: {path!r} does not exist (dataset {ds.get("type")}, '
                                    f'data_root {root!r})')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Config from ``path`` with ``--cfg-options`` applied (``data_root`` reaching every dataset)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config not found: {path!r}')
    cfg = Config.fromfile(path)
    cfg_options = dict(cfg_options or {})
    data_root = cfg_options.pop('data_root', None)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    config_scope(cfg)
    return cfg


def default_work_dir(config_path: str) -> str:
    return osp.join('work_dirs', osp.splitext(osp.basename(config_path))[0])


# Devices whose tensors torch's SyncBatchNorm reduces across processes (it raises on CPU ones).
SYNC_BN_DEVICES = ('cuda', 'xpu', 'hpu')


def backend_usable(backend: str, device: str) -> bool:
    """Whether torch.distributed's ``backend`` can run on ``device`` (unknown ones are trusted:
    device plugins bring their own)."""
    import torch.distributed as dist
    checks = {'nccl': lambda: device == 'cuda' and dist.is_nccl_available(),
              'gloo': dist.is_gloo_available, 'mpi': dist.is_mpi_available}
    return checks.get(backend, lambda: True)()


def sync_bn_supported(device: str) -> bool:
    """Whether SyncBatchNorm can synchronise on ``device`` ('cpu', 'cuda', ...)."""
    return device in SYNC_BN_DEVICES


def _sync_bn_to_bn(node) -> int:
    """Turn every ``type='SyncBN'`` norm config under ``node`` into ``'BN'``; how many there were."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        count += sum(_sync_bn_to_bn(value) for value in node)
    return count


def prepare_distributed(cfg: Config, launcher: str, device: str) -> List[str]:
    """Fit ``cfg``'s distributed settings to a machine whose training device is ``device``;
    the notes to log. Only edits ``cfg``, and only when ``launcher`` is not ``'none'``.

    * ``env_cfg.dist_cfg.backend``: the config's (the MM runtimes all say ``nccl``) when it can
      run here, else gloo, so that ``--launcher pytorch`` also works on CPU machines.
    * on a device SyncBatchNorm cannot reduce on (CPU), ``sync_bn`` is dropped and ``SyncBN``
      norms become BN: statistics stay per process instead of the run failing at its first
      forward. On GPUs both are kept (mmengine converts at DDP wrap time).
    * on CPU, DDP is given no ``device_ids`` (mmengine passes ``[LOCAL_RANK]``, a GPU index,
      which DDP rejects for CPU modules).
    """
    if launcher == 'none':
        return []
    notes = []
    dist_cfg = cfg.setdefault('env_cfg', ConfigDict()).setdefault('dist_cfg', ConfigDict())
    requested = dist_cfg.get('backend')
    if not requested or not backend_usable(requested, device):
        dist_cfg['backend'] = 'nccl' if device == 'cuda' else 'gloo'
        if requested:
            notes.append(f'env_cfg.dist_cfg.backend={requested!r} cannot run on {device}: '
                         f'using {dist_cfg["backend"]!r}')
    if not sync_bn_supported(device):
        dropped = cfg.pop('sync_bn', None)
        converted = _sync_bn_to_bn(cfg.get('model'))
        if dropped or converted:
            notes.append(f'SyncBN does not run on {device}: BatchNorm statistics stay per '
                         f'process (sync_bn={dropped!r} ignored, {converted} SyncBN norm(s) '
                         'made BN)')
    if device == 'cpu':
        wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
        if wrapper.get('type', 'MMDistributedDataParallel') in ('MMDistributedDataParallel',
                                                                  'DistributedDataParallel'):
            wrapper['device_ids'] = None
        cfg.model_wrapper_cfg = wrapper
    return notes


def init_distributed(cfg: Config, launcher: str, device: str):
    """Start the process group for a CPU run, which mmengine cannot (it calls
    ``torch.cuda.set_device`` first); on accelerators mmengine's ``Runner`` does it."""
    import torch.distributed as dist
    if launcher == 'none' or device != 'cpu' or dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise ReportableError(f'--launcher {launcher} needs a GPU; on CPU machines launch with '
                              'torchrun (tools/dist_train.sh, --launcher pytorch)')
    kwargs = dict(cfg.env_cfg.dist_cfg)
    kwargs.pop('init_backend', None)  # mmengine's choice of torch/deepspeed/colossalai init
    if 'timeout' in kwargs:  # seconds in configs, as mmengine reads it
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    dist.init_process_group(**kwargs)


def finish_distributed(end_process: bool = False):
    """Tear the process group down at the end of a run.

    end_process (the tools' entry points, once everything is written): then end a distributed
    process at once, after flushing the logs and output (``os._exit(0)``). Left to interpreter
    exit, torch's distributed threads may still be joinable when C++ destructors run, and the
    process aborts ("terminate called without an active exception", SIGABRT) after its work is
    done, which fails the whole torchrun launch; tearing the group down first was not enough
    (seen in CI on rank 1 of a finished 2-process ``dist_test.sh``).
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.destroy_process_group()
    if end_process:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def log_distributed(runner, notes: List[str]):
    """Log the adjustments ``prepare_distributed`` made and, for a distributed run, its size."""
    for note in notes:
        runner.logger.warning(note)
    if runner.distributed:
        import torch.distributed as dist
        runner.logger.info(f'distributed: launcher {runner.launcher}, world_size '
                           f'{runner.world_size}, backend {dist.get_backend()}')


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def add_custom_hooks(cfg: Config, *hooks: Union[str, dict]):
    """Append ``hooks`` (type names, or hook configs with arguments) to ``cfg.custom_hooks``,
    each unless the config has a hook of its type."""
    present = list(cfg.get('custom_hooks') or [])
    types = {h.get('type') for h in present}
    hooks = [dict(type=h) if isinstance(h, str) else h for h in hooks]
    cfg.custom_hooks = present + [h for h in hooks if h['type'] not in types]


def use_checked_image_loading(cfg: Config, skip_bad: bool = False):
    """Swap each dataset pipeline's ``LoadImageFromFile`` for ``CheckedLoadImageFromFile``."""
    for _, ds in _dataset_cfgs(cfg):
        for step in ds.get('pipeline') or []:
            if isinstance(step, dict) and step.get('type') == 'LoadImageFromFile':
                step['type'] = 'CheckedLoadImageFromFile'
                step['skip_bad'] = skip_bad


def resume_checkpoint(work_dir: str, resume: str) -> Optional[str]:
    """The checkpoint ``--resume`` means: ``resume`` itself, or for ``'auto'`` the one that
    ``work_dir/last_checkpoint`` names (None when there is none: the run starts afresh)."""
    if resume != 'auto':
        path = resume
    else:
        pointer = osp.join(work_dir, 'last_checkpoint')
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            path = f.read().strip()
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint to resume from not found: {path!r}'
                                f'{previous_checkpoint_hint(path)}')
    return path


def previous_checkpoint(path: str) -> Optional[str]:
    """The checkpoint saved before ``path`` in its folder (``iter_4.pth`` for ``iter_6.pth``)."""
    folder, name = osp.split(path)
    match = re.fullmatch(r'(.*?)(\d+)\.pth', name)
    if not match or not osp.isdir(folder or '.'):
        return None
    prefix, step = match.group(1), int(match.group(2))
    steps = [int(m.group(1)) for m in (re.fullmatch(re.escape(prefix) + r'(\d+)\.pth', f)
                                       for f in os.listdir(folder or '.')) if m]
    earlier = [s for s in steps if s < step]
    return osp.join(folder, f'{prefix}{max(earlier)}.pth') if earlier else None


def previous_checkpoint_hint(path: str) -> str:
    previous = previous_checkpoint(path)
    return (f'; resume from the previous one with --resume {previous}' if previous else
            f'; no earlier checkpoint in {osp.dirname(path) or "."}: train again without --resume')


def check_resume_checkpoint(model, path: str):
    """Raise unless ``path`` reads back (``CheckpointReadError``, offering the previous
    checkpoint) and holds every tensor of ``model`` (``CheckpointMismatchError``)."""
    try:
        check_checkpoint_fits(model, path)
    except CheckpointReadError as e:
        raise CheckpointReadError(f'checkpoint {path} is corrupt (truncated?)'
                                  f'{previous_checkpoint_hint(path)}') from e


_REGISTRY_MISS = re.compile(r'(\S+) is not in the (?:(\w+)::)?(\w+) registry')
_DATA_ERRORS = (AssertionError, KeyError, OSError, RuntimeError, ValueError)


def user_error_message(e: BaseException) -> Optional[str]:
    """The one-line message for an error the user fixes from its text, None for anything else
    (a bug keeps its traceback).

    Those are: ``ReportableError`` and missing files; a type name no registry knows (mmengine's
    KeyError, a paragraph with a link, is cut to its facts); an error while a dataset loads its
    annotations; and mmvminet's own argument checks (unknown arch or mask kind, inputs smaller
    than the network's stride).
    """
    if isinstance(e, (ReportableError, FileNotFoundError)):
        return str(e)
    if isinstance(e, KeyError) and e.args:
        miss = _REGISTRY_MISS.match(str(e.args[0]))
        if miss:
            name, scope, registry = miss.groups()
            where = f'scope {scope!r}' if scope else 'any scope'
            return (f'{registry} type {name!r} is not registered in {where}; check its spelling, '
                    'or list the module that registers it in custom_imports')
    dataset = _loading_dataset(e)
    if dataset is not None and isinstance(e, _DATA_ERRORS):
        from .hooks import describe_dataset, filter_note
        if not getattr(dataset, 'data_list', True):  # mmengine fails to serialize an empty list
            return f'{describe_dataset(dataset)} has no samples{filter_note(dataset)}'
        return f'{describe_dataset(dataset)} could not be loaded: {type(e).__name__}: {e}'
    frames = traceback.extract_tb(e.__traceback__)
    if isinstance(e, (ValueError, TypeError)) and frames and \
            osp.abspath(frames[-1].filename).startswith(PACKAGE_DIR + os.sep):
        return str(e)
    return None


def _loading_dataset(e: BaseException):
    """The dataset whose ``full_init`` (loading and filtering annotations) raised ``e``."""
    from mmengine.dataset import BaseDataset
    dataset, tb = None, e.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get('self')
        if tb.tb_frame.f_code.co_name == 'full_init' and isinstance(owner, BaseDataset):
            dataset = owner
        tb = tb.tb_next
    return dataset
