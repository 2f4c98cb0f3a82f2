"""Loading VMINet weights into a backbone, loudly.

A backbone's ``init_cfg=dict(type='Pretrained', ...)`` ends here instead of in mmengine's
PretrainedInit, which, given a classifier's ``backbone.``-prefixed checkpoint and no ``prefix``,
loads nothing and only logs a warning. Here every backbone tensor must be found, with its shape,
or the run stops naming the first missing or mismatching key.
"""
import argparse
import os
from typing import Dict, Optional

import torch
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint

from ..errors import ReportableError
from ..fileio import atomic_open
from .vminet import convert_official_state_dict, is_official_state_dict


class CheckpointMismatchError(ReportableError, ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


class CheckpointReadError(CheckpointMismatchError):
    """A checkpoint file that cannot be read back: truncated by a crash, or not a torch file."""


def read_state_dict(path: str, map_location='cpu', use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file or URL: ``state_dict`` / ``state_dict_ema`` / bare dict.

    The authors' ``.pth.tar`` holds an ``argparse.Namespace`` (``args``), which torch's
    ``weights_only`` loader refuses unless allow-listed; it is data, so we allow it.
    """
    if '://' not in path and not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path!r}')
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            checkpoint = _load_checkpoint(path, map_location=map_location)
        except Exception as e:  # torch's own error names no path
            raise CheckpointReadError(f'cannot read checkpoint {path!r}: {e}') from e
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(f'{path!r} is not a checkpoint dict '
                                      f'(found {type(checkpoint).__name__})')
    key = 'state_dict_ema' if use_ema else 'state_dict'
    if use_ema and key not in checkpoint:
        raise CheckpointMismatchError(f'{path!r} has no state_dict_ema')
    state_dict = checkpoint.get(key, checkpoint)
    if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointMismatchError(f'{path!r} holds no state dict of tensors '
                                      f'(top-level keys: {sorted(checkpoint)[:8]})')
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state_dict.items()}


def backbone_state_dict(state_dict: Dict[str, torch.Tensor], prefix: Optional[str] = None,
                        source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The backbone's part of a classifier/detector/segmentor or authors' state dict."""
    if prefix:
        picked = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointMismatchError(
                f'no key of {source} starts with prefix {prefix!r}; its keys look like '
                f'{sorted(state_dict)[:3]}')
        state_dict = picked
    elif any(k.startswith('backbone.') for k in state_dict):
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items()
                      if k.startswith('backbone.')}
    if is_official_state_dict(state_dict):
        state_dict = convert_official_state_dict(state_dict)
    return state_dict


def check_state_dict(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], source: str):
    """Raise on the first model key that ``state_dict`` lacks or holds with another shape.

    Returns the keys of ``state_dict`` the model does not have (e.g. a classifier's head).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise CheckpointMismatchError(
            f'{source} lacks {len(missing)} of the model\'s {len(own)} keys, first: '
            f'{missing[0]!r} (shape {tuple(own[missing[0]].shape)}). Is it a VMINet checkpoint? '
            f'Its keys look like {sorted(state_dict)[:3]}')
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise CheckpointMismatchError(
                f'{source} does not fit this model: first mismatching key {k!r} has shape '
                f'{tuple(state_dict[k].shape)} in the checkpoint, {tuple(v.shape)} in the model '
                f'(another VMINet variant?)')
    return [k for k in state_dict if k not in own]


def load_backbone_checkpoint(model: torch.nn.Module, path: str, prefix: Optional[str] = None,
                             map_location='cpu'):
    """Load the backbone part of ``path`` into ``model``, all keys or an error."""
    state_dict = backbone_state_dict(read_state_dict(path, map_location), prefix, repr(path))
    unexpected = check_state_dict(model, state_dict, repr(path))
    model.load_state_dict({k: v for k, v in state_dict.items() if k not in unexpected})
    note = f'; ignored {len(unexpected)} keys not in the backbone' if unexpected else ''
    print_log(f'VMINet: loaded all {len(state_dict) - len(unexpected)} backbone tensors from '
              f'{path}{note}', logger='current')


def infer_official_arch(state_dict: Dict[str, torch.Tensor]) -> dict:
    """``base_dim``, ``ratio`` and ``depths`` of an authors' state dict, read off its shapes."""
    base_dim = state_dict['stages.0.0.conv.weight'].shape[0]
    ratio = state_dict['stages.0.1.f1.conv.weight'].shape[0] // base_dim
    depths = []
    for i in range(4):
        blocks = {k.split('.')[2] for k in state_dict if k.startswith(f'stages.{i}.')}
        depths.append(len(blocks) - 1)  # block 0 is the downsampler
    return dict(base_dim=base_dim, ratio=ratio, depths=depths)


def check_checkpoint_fits(model: torch.nn.Module, path: str, part: Optional[str] = None):
    """Raise ``CheckpointMismatchError`` unless ``path`` holds every tensor of ``model`` (or of
    its submodule ``part``, e.g. ``'backbone'``) with the model's shape.

    mmengine's ``load_from`` and resume load non-strictly: a checkpoint of another variant or
    model only logs warnings and leaves the mismatching weights as initialised.
    """
    if is_model_wrapper(model):  # distributed runs wrap the model
        model = model.module
    state_dict = read_state_dict(path)
    if part:
        state_dict = backbone_state_dict(state_dict, f'{part}.', repr(path))
        model = getattr(model, part)
    check_state_dict(model, state_dict, repr(path))


def save_checkpoint_atomic(checkpoint: dict, path: str):
    """``torch.save`` through ``atomic_open``: a crash never leaves a half-written ``path``."""
    with atomic_open(path, 'wb') as f:
        torch.save(checkpoint, f)
