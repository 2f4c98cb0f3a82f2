"""Image loading that names the file it cannot decode, or skips it and counts.

tools/train.py and tools/test.py swap every ``LoadImageFromFile`` of a config's pipelines for
``CheckedLoadImageFromFile`` (same arguments). Grayscale and RGBA files need nothing: with the
default ``color_type='color'`` the decoder returns 3-channel BGR for both.
"""
import logging
import os.path as osp
from typing import Optional

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmengine.registry import TRANSFORMS

from .errors import DatasetError


@TRANSFORMS.register_module()
class CheckedLoadImageFromFile(LoadImageFromFile):
    """``LoadImageFromFile`` whose decoding failures name the file.

    Args:
        skip_bad (bool): instead of raising, return ``None`` for an undecodable image; mmengine's
            ``BaseDataset`` then draws another sample (training only: a test set must be
            complete). Each skip is logged with the running count of this process (each
            dataloader worker counts its own).
        **kwargs: ``LoadImageFromFile``'s arguments.
    """

    def __init__(self, skip_bad: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.skip_bad = skip_bad
        self.skipped = 0

    def transform(self, results: dict) -> Optional[dict]:
        path = results['img_path']
        try:
            return super().transform(results)
        except FileNotFoundError:
            raise
        # cv2 returns None for bytes it cannot decode (the parent asserts on it); Pillow raises
        # OSError (UnidentifiedImageError) or ValueError
        except (AssertionError, OSError, ValueError) as e:
            if not osp.exists(path):  # some backends say "cannot read" for a missing file
                raise FileNotFoundError(f'image not found: {path!r}') from e
            if not self.skip_bad:
                raise DatasetError(f'cannot decode image {path!r}; fix or delete it, or pass '
                                   '--skip-bad-images to train without it') from e
        self.skipped += 1
        print_log(f'skipped undecodable image {path!r} ({self.skipped} skipped so far in this '
                  'process)', logger='current', level=logging.WARNING)
        return None

