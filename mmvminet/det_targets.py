"""Mask R-CNN's mask targets on the device: mmdet's values without its host round trips.

For each image, mmdet's ``mask_target_single`` (``BitmapMasks`` ground truth) copies the
positive proposals and their assigned indices to the host (two syncs), copies every ground-truth
mask of the image to the device, repeats the mask of each positive proposal at full image size
(``index_select``: 128 positives of a 1333x800 image make 546 MB of float32), crops and resizes
them with mmcv's ``roi_align``, thresholds, copies the small results back to the host (a third
sync) and then to the device again.

``mask_target`` here does the same arithmetic on the device: the proposals clipped to the
image as mmdet clips them, then one ``roi_align`` over the image's masks, each RoI naming its
assigned mask as its batch index instead of a repeated copy (``roi_align`` samples only the
RoI's own batch entry, so every value is the one mmdet computes), then the same threshold. The
one copy left is the masks' own upload; nothing is copied back to the host. Polygon masks keep
mmdet's path. ``use_device_mask_targets`` points ``FCNMaskHead`` (and its subclasses) at it, or
back.

Before the step, mmdet's ``DetDataPreprocessor`` (``pad_mask=True``: Mask R-CNN's configs) pads
every image's masks to the batch's size on the host, one ``mmcv.impad`` per mask, so that the
device waits for it (the profile's "data preprocessor", docs/benchmarks.md). ``pad_gt_masks``
wraps each image's ``BitmapMasks`` in ``DevicePaddedMasks`` instead: the size of mmdet's padded
masks, the padding done by ``mask_target`` on the device (the same zeros at the same places,
so the same targets), or by mmdet's own code if anything reads ``.masks`` on the host.

``assign_wrt_overlaps`` is ``MaxIoUAssigner``'s (the RPN's and the RoI head's assigner) without
its syncs: mmdet's loops over the ground truths for the low-quality matches (step 4), reading
each one's best IoU on the host and assigning through a boolean mask (a ``nonzero``, a second
sync), two syncs per ground truth and image in each stage. Here the same rule, "each ground
truth takes every prior it overlaps best, a later one overriding an earlier", is one masked
maximum over the (G, N) matrix, and the other steps are ``torch.where``: the same assignment,
nothing read back. ``use_sync_free_assigner`` patches ``MaxIoUAssigner`` (and its subclasses).

``use_fast_det_train`` switches these three and ``mmvminet.det_rpn``'s cached anchors and
batched RPN proposals and losses; ``mmvminet.hooks.FastDetTrainHook`` does so for a run.
"""
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmcv.ops import roi_align
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.models.roi_heads.mask_heads import fcn_mask_head
from mmdet.models.task_modules.assigners import AssignResult, MaxIoUAssigner
from mmdet.structures.mask import BitmapMasks
from mmdet.structures.mask import mask_target as mmdet_mask_target
from mmdet.structures.mask.mask_target import mask_target_single as mmdet_mask_target_single
from torch.nn.modules.utils import _pair


def upload(array: np.ndarray, device) -> torch.Tensor:
    """``array`` on ``device``. To a GPU through pinned memory without blocking: a plain
    ``.to(device)`` of pageable memory waits for every kernel queued before it."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type != 'cuda':
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


class DevicePaddedMasks(BitmapMasks):
    """The ``BitmapMasks`` that mmdet's ``BitmapMasks.pad(pad_shape, pad_val)`` returns, padded
    only when needed: ``mask_target`` pads ``unpadded`` on the device, and reading ``.masks`` on
    the host pads it there as mmdet does (once). ``height`` and ``width`` are the padded size.

    Shapes: unpadded (N, h, w) uint8 -> masks (N, height, width), height >= h, width >= w.
    """

    def __init__(self, masks: BitmapMasks, pad_shape: Sequence[int], pad_val: int = 0):
        # padding mmdet's padded masks again pads the original ones to the new size
        self.unpadded = masks.unpadded if isinstance(masks, DevicePaddedMasks) else masks.masks
        self.height, self.width = (int(n) for n in pad_shape[:2])
        self.pad_val = pad_val
        self._padded = None

    @property
    def masks(self) -> np.ndarray:
        if self._padded is None:
            height, width = self.unpadded.shape[1:]
            self._padded = BitmapMasks(self.unpadded, height, width).pad(
                (self.height, self.width), pad_val=self.pad_val).masks
        return self._padded

    def __len__(self) -> int:
        return len(self.unpadded)

    def to_device(self, device) -> torch.Tensor:
        """(N, height, width) uint8 on ``device``: the unpadded masks uploaded, padded there."""
        masks = upload(self.unpadded, device)
        height, width = masks.shape[1:]
        return F.pad(masks, (0, self.width - width, 0, self.height - height), value=self.pad_val)


MMDET_PAD_GT_MASKS = DetDataPreprocessor.pad_gt_masks


def pad_gt_masks(self: DetDataPreprocessor, batch_data_samples) -> None:
    """``DetDataPreprocessor.pad_gt_masks`` with each image's ``BitmapMasks`` wrapped in
    ``DevicePaddedMasks`` (padded on the device by ``mask_target``) instead of padded on the
    host; other kinds of masks are padded by mmdet's code."""
    if 'masks' not in batch_data_samples[0].gt_instances:
        return
    for sample in batch_data_samples:
        masks = sample.gt_instances.masks
        if type(masks) in (BitmapMasks, DevicePaddedMasks):  # a data sample padded again
            sample.gt_instances.masks = DevicePaddedMasks(masks, sample.batch_input_shape,
                                                          self.mask_pad_value)
        else:
            sample.gt_instances.masks = masks.pad(sample.batch_input_shape,
                                                  pad_val=self.mask_pad_value)


def mask_target_single(pos_proposals: torch.Tensor, pos_assigned_gt_inds: torch.Tensor,
                       gt_masks, cfg) -> torch.Tensor:
    """Targets of one image's positives: (P, 4) proposals (x1, y1, x2, y2), (P,) indices into
    ``gt_masks`` (G masks of H x W) -> (P, mask_h, mask_w) float32, 0/1 (or soft with
    ``cfg.soft_mask_target``), on the proposals' device."""
    if not isinstance(gt_masks, BitmapMasks):
        return mmdet_mask_target_single(pos_proposals, pos_assigned_gt_inds, gt_masks, cfg)
    mask_size = _pair(cfg.mask_size)
    if pos_proposals.size(0) == 0:
        return pos_proposals.new_zeros((0, ) + mask_size)
    device, dtype = pos_proposals.device, pos_proposals.dtype
    # mmdet clips x to [0, W] and y to [0, H] (np.clip of the proposals' own dtype); by Python
    # numbers, since a tensor of the bounds would be a blocking copy to the device
    boxes = pos_proposals.clamp(min=0)
    boxes[:, 0::2].clamp_(max=gt_masks.width)
    boxes[:, 1::2].clamp_(max=gt_masks.height)
    rois = torch.cat([pos_assigned_gt_inds.to(dtype)[:, None], boxes], dim=1)
    if isinstance(gt_masks, DevicePaddedMasks):
        masks = gt_masks.to_device(device)
    else:
        masks = upload(gt_masks.masks, device)
    targets = roi_align(masks.to(dtype)[:, None], rois, mask_size, 1.0, 0, 'avg',
                        True).squeeze(1)
    if not cfg.get('soft_mask_target', False):
        targets = targets >= 0.5
    return targets.float()


def mask_target(pos_proposals_list: Sequence[torch.Tensor],
                pos_assigned_gt_inds_list: Sequence[torch.Tensor], gt_masks_list: List,
                cfg) -> torch.Tensor:
    """mmdet's ``mask_target``: the targets of every image's positives, concatenated."""
    targets = [mask_target_single(*args, cfg)
               for args in zip(pos_proposals_list, pos_assigned_gt_inds_list, gt_masks_list)]
    return torch.cat(targets) if targets else targets


def use_device_mask_targets(enabled: bool = True):
    """Point ``FCNMaskHead.get_targets`` at this ``mask_target`` and ``DetDataPreprocessor`` at
    this ``pad_gt_masks``, or both back at mmdet's."""
    fcn_mask_head.mask_target = mask_target if enabled else mmdet_mask_target
    DetDataPreprocessor.pad_gt_masks = pad_gt_masks if enabled else MMDET_PAD_GT_MASKS


MMDET_ASSIGN_WRT_OVERLAPS = MaxIoUAssigner.assign_wrt_overlaps


def assign_wrt_overlaps(self: MaxIoUAssigner, overlaps: torch.Tensor,
                        gt_labels: torch.Tensor) -> AssignResult:
    """``MaxIoUAssigner.assign_wrt_overlaps`` with no host sync: (G, N) IoUs of G ground truths
    with N priors, (G,) labels -> the same ``AssignResult`` as mmdet's ((N,) ``gt_inds``: -1
    ignored, 0 background, i + 1 ground truth i; (N,) ``max_overlaps``; (N,) ``labels``)."""
    num_gts, num_priors = overlaps.shape
    if num_gts == 0 or num_priors == 0:  # nothing to loop over: mmdet's own
        return MMDET_ASSIGN_WRT_OVERLAPS(self, overlaps, gt_labels)
    max_overlaps, argmax_overlaps = overlaps.max(dim=0)
    gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
    gt_inds = overlaps.new_full((num_priors, ), -1, dtype=torch.long)
    # steps 2 and 3: background below neg_iou_thr, the best ground truth above pos_iou_thr
    if isinstance(self.neg_iou_thr, float):
        negative = (max_overlaps >= 0) & (max_overlaps < self.neg_iou_thr)
    else:
        low, high = self.neg_iou_thr
        negative = (max_overlaps >= low) & (max_overlaps < high)
    gt_inds = torch.where(negative, 0, gt_inds)
    gt_inds = torch.where(max_overlaps >= self.pos_iou_thr, argmax_overlaps + 1, gt_inds)
    if self.match_low_quality:
        # step 4: mmdet's loop over i = 0..G-1 sets the priors of ground truth i to i + 1, so
        # the last ground truth that claims a prior wins: the largest i + 1 among its claims
        claims = (gt_max_overlaps >= self.min_pos_iou)[:, None]
        if self.gt_max_assign_all:
            claims = claims & (overlaps == gt_max_overlaps[:, None])
        else:
            best = torch.zeros_like(overlaps, dtype=torch.bool)
            best[torch.arange(num_gts, device=overlaps.device), gt_argmax_overlaps] = True
            claims = claims & best
        number = torch.arange(1, num_gts + 1, device=overlaps.device)[:, None]
        claimed_by = torch.where(claims, number, 0).amax(dim=0)
        gt_inds = torch.where(claimed_by > 0, claimed_by, gt_inds)
    labels = torch.where(gt_inds > 0, gt_labels[(gt_inds - 1).clamp(min=0)].long(), -1)
    return AssignResult(num_gts=num_gts, gt_inds=gt_inds, max_overlaps=max_overlaps,
                        labels=labels)


def use_sync_free_assigner(enabled: bool = True):
    """Point ``MaxIoUAssigner.assign_wrt_overlaps`` at this module's, or back at mmdet's."""
    MaxIoUAssigner.assign_wrt_overlaps = (assign_wrt_overlaps if enabled
                                          else MMDET_ASSIGN_WRT_OVERLAPS)


def use_fast_det_train(enabled: bool = True):
    """All of this module's replacements and ``det_rpn``'s on, or mmdet's own code back."""
    from .det_rpn import use_fast_rpn
    use_device_mask_targets(enabled)
    use_sync_free_assigner(enabled)
    use_fast_rpn(enabled)
