"""What tools/train.py and tools/test.py share: load a config of any of the three libraries,
apply command-line overrides, and check the data paths before minutes are spent building things.
"""
import os
import os.path as osp
from typing import Optional

from mmengine.config import Config, ConfigDict, DictAction  # noqa: F401 (DictAction re-exported)

SCOPES = ('mmpretrain', 'mmdet', 'mmseg')


class DataPathError(FileNotFoundError):
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


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
