"""Fixes the pinned OpenMMLab stack needs on today's torch and Python, applied once on import.

Each fix is targeted, idempotent and tested (tests/test_compat.py):

1. ``allow_mmengine_checkpoint_types``: torch >= 2.6 loads with ``weights_only=True``; mmengine
   0.10.7 writes ``HistoryBuffer`` objects and numpy scalars/arrays into ``message_hub`` and
   ``meta``, so ``resume=True`` and the libraries' own ``tools/test.py`` fail with
   UnpicklingError. We allow-list exactly those types (no blanket ``weights_only=False``).
2. ``disable_mmpretrain_multimodal_under_transformers5``: mmpretrain 1.2.0 imports its
   multimodal models whenever transformers >= 4.28 and pycocotools are installed, and those
   modules crash under transformers 5 ("NoneType takes no arguments"). Before
   ``mmpretrain.models`` is first imported, we turn that switch off when transformers >= 5, so
   mmpretrain registers its placeholders instead.
3. ``atomic_runner_checkpoints``: mmengine's ``Runner.save_checkpoint`` and ``CheckpointHook``
   write the checkpoint and the ``last_checkpoint`` pointer in place, so a run killed mid-write
   leaves a truncated file that ``--resume`` then picks. We route both local writes through
   ``mmvminet.fileio.atomic_open`` (temporary file, fsync, ``os.replace``).
4. ``prune_checkpoints_after_save``: ``CheckpointHook`` deletes its oldest kept checkpoint
   before it writes the new one, so with ``max_keep_ckpts=1`` a run stopped during a save has
   no checkpoint left, and ``--resume`` starts over. We delete the oldest only once the new one
   is on disk (for a moment the disk holds one checkpoint more).
"""
import importlib.metadata
import importlib.util
import os
import pickle
import sys
import warnings
from collections import deque

import numpy as np
import torch


def history_buffer_statistic(owner, name):
    """Stands in for ``builtins.getattr`` while unpickling: a ``HistoryBuffer`` pickles its
    statistics table as ``getattr(HistoryBuffer, 'mean')`` etc. Allowing the real ``getattr``
    would let a checkpoint fetch any attribute of any allowed object; this allows only those."""
    from mmengine.logging.history_buffer import HistoryBuffer
    # the built-in four are added to the table lazily, by the first HistoryBuffer created
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if owner is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'refused getattr({owner!r}, {name!r}) in a checkpoint')


def mmengine_checkpoint_types():
    """The non-tensor globals mmengine 0.10.7 pickles into checkpoints it writes."""
    from mmengine.logging.history_buffer import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    types = [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
             (history_buffer_statistic, 'builtins.getattr')]
    # files written under numpy 1.x name the module numpy.core
    types += [(multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
              (multiarray.scalar, 'numpy.core.multiarray.scalar')]
    # numpy >= 1.25 pickles dtypes as instances of their numpy.dtypes classes
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        types += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith('DType')]
    return types


def allow_mmengine_checkpoint_types():
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 loads everything anyway
        return
    add_safe_globals(mmengine_checkpoint_types())


def transformers_major_version():
    try:
        return int(importlib.metadata.version('transformers').split('.')[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def disable_mmpretrain_multimodal_under_transformers5():
    major = transformers_major_version()
    if major is None or major < 5 or importlib.util.find_spec('mmpretrain') is None:
        return
    if 'mmpretrain.models' in sys.modules:
        if 'mmpretrain.models.multimodal.blip' in sys.modules:
            warnings.warn('mmpretrain.models was imported before mmvminet under transformers '
                          f'{major}.x; import mmvminet first so its multimodal models are skipped')
        return
    import mmpretrain.utils.dependency as dependency
    dependency.WITH_MULTIMODAL = False


def _is_local(path) -> bool:
    return '://' not in str(path)  # mmengine's other backends are named by URL prefixes


def atomic_runner_checkpoints():
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    import mmengine.runner.runner as runner_module

    from .fileio import atomic_open
    from .models.checkpoint import save_checkpoint_atomic
    mmengine_save = runner_module.save_checkpoint
    if getattr(mmengine_save, 'atomic', False):
        return

    def save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
        if file_client_args is None and backend_args is None and _is_local(filename):
            save_checkpoint_atomic(checkpoint, filename)
        else:
            mmengine_save(checkpoint, filename, file_client_args, backend_args)

    def pointer_open(file, mode='r', *args, **kwargs):
        """``open`` as CheckpointHook's module sees it; its only call writes the pointer."""
        if mode == 'w' and os.path.basename(file) == 'last_checkpoint' and _is_local(file):
            return atomic_open(file, 'w')
        return open(file, mode, *args, **kwargs)

    save_checkpoint.atomic = True
    runner_module.save_checkpoint = save_checkpoint  # the name Runner.save_checkpoint calls
    checkpoint_hook.open = pointer_open  # shadows the built-in for that module only


def prune_checkpoints_after_save():
    from mmengine.dist import is_main_process
    from mmengine.hooks import CheckpointHook
    save_with_step = CheckpointHook._save_checkpoint_with_step
    if getattr(save_with_step, 'prunes_after_save', False):
        return

    def _save_checkpoint_with_step(self, runner, step, meta):
        keep = self.max_keep_ckpts
        if keep <= 0:
            return save_with_step(self, runner, step, meta)
        # one place more, so that mmengine's save removes nothing; a deque of maxlen ``keep``
        # would drop the oldest id without deleting its file
        self.max_keep_ckpts = keep + 1
        self.keep_ckpt_ids = deque(self.keep_ckpt_ids, keep + 1)
        try:
            save_with_step(self, runner, step, meta)
        finally:
            self.max_keep_ckpts = keep
        while len(self.keep_ckpt_ids) > keep:
            oldest = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft()))
            if not is_main_process():
                continue
            if self.file_backend.isfile(oldest):
                self.file_backend.remove(oldest)
            elif self.file_backend.isdir(oldest):  # deepspeed saves folders
                self.file_backend.rmtree(oldest)
        self.keep_ckpt_ids = deque(self.keep_ckpt_ids, keep)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

    _save_checkpoint_with_step.prunes_after_save = True
    CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step


def apply_all():
    allow_mmengine_checkpoint_types()
    disable_mmpretrain_multimodal_under_transformers5()
    atomic_runner_checkpoints()
    prune_checkpoints_after_save()
