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
"""
import importlib.metadata
import importlib.util
import pickle
import sys
import warnings

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


def apply_all():
    allow_mmengine_checkpoint_types()
    disable_mmpretrain_multimodal_under_transformers5()
