"""mmvminet: the VMINet backbone and a ViTDet-style neck for OpenMMLab.

Importing it (directly, or through ``custom_imports = dict(imports=['mmvminet'])`` in any
mmpretrain, mmdet or mmseg config) applies the stack fixes of ``mmvminet.compat`` and registers
``VMINet`` and ``SimpleFeaturePyramid`` in every installed library's ``MODELS`` registry, and
mmvminet's hooks, ``CheckedLoadImageFromFile`` and ``MergedGroupsOptimWrapperConstructor`` in
mmengine's (which every library sees).
"""
from . import compat
from .version import __version__

compat.apply_all()

from .models import *  # noqa: E402,F401,F403  (after the fixes: it imports the MM registries)
from . import datasets, hooks, optim  # noqa: E402,F401  (registration)

__all__ = ['__version__']
