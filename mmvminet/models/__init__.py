from .checkpoint import (CheckpointMismatchError, CheckpointReadError, check_checkpoint_fits,
                         load_backbone_checkpoint)
from .simple_fpn import SimpleFeaturePyramid
from .vminet import MASK_KINDS, VMINet, VMISA, build_mask

__all__ = ['VMINet', 'VMISA', 'SimpleFeaturePyramid', 'MASK_KINDS', 'build_mask',
           'CheckpointMismatchError', 'CheckpointReadError', 'check_checkpoint_fits',
           'load_backbone_checkpoint']
