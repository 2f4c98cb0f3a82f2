from .checkpoint import CheckpointMismatchError, load_backbone_checkpoint
from .simple_fpn import SimpleFeaturePyramid
from .vminet import MASK_KINDS, VMINet, VMISA, build_mask

__all__ = ['VMINet', 'VMISA', 'SimpleFeaturePyramid', 'MASK_KINDS', 'build_mask',
           'CheckpointMismatchError', 'load_backbone_checkpoint']
