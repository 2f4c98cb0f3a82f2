"""The RPN's anchors, proposals and losses with fewer host operations: mmdet's values, batched.

A Mask R-CNN training step on a GPU waits on the host, which dispatches its operators one by one
(docs/benchmarks.md, "Mask R-CNN's training step"). Three parts of mmdet's RPN dispatch far
more operators than their arithmetic needs:

* ``AnchorGenerator.grid_priors`` and ``valid_flags`` build every level's anchors and their valid
  flags again for every call (about ten operators a level, per call and, for the flags, per
  image), although they depend only on the feature-map sizes, the padded image size, the dtype
  and the device, and copy the base anchors from the CPU each time. ``cached_grid_priors`` /
  ``cached_valid_flags`` keep the last few results and return the same tensors for the same
  arguments, and the base anchors stay on the device.
* ``RPNHead.predict_by_feat`` (proposals, every training step) runs, per image and per level,
  its reshape, sigmoid, sort, top-k selection and gathers, then the box decoding per image.
  ``batched_predict_by_feat`` runs each level's steps once for the whole batch (a sort along
  the batch's rows, a gather), decodes every image's boxes in one call, clips each image to its
  own size, and then hands each image to mmdet's own ``_bbox_post_process`` (small boxes
  removed, NMS across levels, ``max_per_img``). Every step is element-wise or row-wise, so each
  image gets the boxes, scores and order mmdet computes for it (``tests/test_det_rpn.py``).
* ``RPNHead.loss_by_feat`` computes each level's losses on its own (``multi_apply`` over the
  five levels: per level a reshape of every target, the one-hot labels with a ``nonzero`` and
  ``L1Loss``'s ``any`` check, two syncs), about 40 operators a level. ``batched_loss_by_feat``
  takes mmdet's targets and computes the element-wise losses of all levels at once, in mmdet's
  per-level order (level by level, each level's entries as mmdet flattens them), then sums each
  level's part and divides it by the average factor as mmdet's ``weight_reduce_loss`` does: each
  level's loss, the same per-level list mmdet returns, equal up to the rounding of the sums
  (``tests/test_det_rpn.py``).

``use_fast_rpn`` switches all three on, or mmdet's own code back; ``mmvminet.det_targets.
use_fast_det_train`` (and so ``FastDetTrainHook``) includes it.
"""
from collections import OrderedDict
from typing import List, Optional, Sequence

import torch
from mmdet.models.dense_heads import AnchorHead, RPNHead
from mmdet.models.losses import CrossEntropyLoss, L1Loss
from mmdet.models.losses.cross_entropy_loss import binary_cross_entropy
from mmdet.models.losses.smooth_l1_loss import l1_loss
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmengine.structures import InstanceData

#: results kept per anchor generator and kind: a 2 x 800x1344 batch's anchors are 4.3 MB
CACHE_SIZE = 8

MMDET_GRID_PRIORS = AnchorGenerator.grid_priors
MMDET_VALID_FLAGS = AnchorGenerator.valid_flags
MMDET_PREDICT_BY_FEAT = RPNHead.predict_by_feat
MMDET_LOSS_BY_FEAT = RPNHead.loss_by_feat


def _cached(generator: AnchorGenerator, kind: str, key, compute):
    """The list ``compute()`` returns, computed once per ``key`` among the last CACHE_SIZE."""
    cache = generator.__dict__.setdefault('_mmvminet_cache', {}).setdefault(kind, OrderedDict())
    if key in cache:
        cache.move_to_end(key)
    else:
        cache[key] = compute()
        if len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
    return list(cache[key])  # a new list: callers may append to theirs


def cached_grid_priors(self: AnchorGenerator, featmap_sizes, dtype: torch.dtype = torch.float32,
                       device='cuda') -> List[torch.Tensor]:
    """``AnchorGenerator.grid_priors``: per level, (H * W * A, 4) anchors, computed once per
    feature-map sizes, dtype and device."""
    key = (tuple(tuple(size) for size in featmap_sizes), dtype, torch.device(device))

    def compute():
        # mmdet copies each level's base anchors from the CPU in every call, a blocking copy
        # that waits for the queued kernels: kept on the device instead (the same values)
        self.base_anchors = [anchors.to(device) for anchors in self.base_anchors]
        return MMDET_GRID_PRIORS(self, featmap_sizes, dtype=dtype, device=device)

    return _cached(self, 'grid_priors', key, compute)


def cached_valid_flags(self: AnchorGenerator, featmap_sizes, pad_shape: Sequence[int],
                       device='cuda') -> List[torch.Tensor]:
    """``AnchorGenerator.valid_flags``: per level, (H * W * A,) bools, computed once per
    feature-map sizes, padded image size and device."""
    key = (tuple(tuple(size) for size in featmap_sizes), tuple(pad_shape[:2]),
           torch.device(device))
    return _cached(self, 'valid_flags', key,
                   lambda: MMDET_VALID_FLAGS(self, featmap_sizes, pad_shape, device=device))


def _batchable(head: RPNHead, score_factors, rescale: bool, with_nms: bool) -> bool:
    """Whether ``head`` computes its proposals as ``RPNHead`` does, with a sigmoid and the
    clipping ``DeltaXYWHBBoxCoder`` that this module's batched version reproduces."""
    coder = head.bbox_coder
    return (type(head)._predict_by_feat_single is RPNHead._predict_by_feat_single
            and type(head)._bbox_post_process is RPNHead._bbox_post_process
            and score_factors is None and not rescale and with_nms and head.use_sigmoid_cls
            and head.cls_out_channels == 1 and type(coder) is DeltaXYWHBBoxCoder
            and coder.clip_border and not coder.use_box_type
            and not head.prior_generator.use_box_type)


def batched_predict_by_feat(self: RPNHead, cls_scores: List[torch.Tensor],
                            bbox_preds: List[torch.Tensor],
                            score_factors: Optional[List[torch.Tensor]] = None,
                            batch_img_metas: Optional[List[dict]] = None, cfg=None,
                            rescale: bool = False, with_nms: bool = True) -> List[InstanceData]:
    """``RPNHead.predict_by_feat`` for the whole batch at once.

    Args:
        cls_scores: per level, (B, A, H, W) objectness logits.
        bbox_preds: per level, (B, A * 4, H, W) box deltas.
        batch_img_metas: B dicts with ``img_shape``.

    Returns:
        per image, an ``InstanceData`` of up to ``cfg.max_per_img`` proposals: (K, 4) ``bboxes``,
        (K,) ``scores``, (K,) ``labels`` (zeros), as mmdet's.
    """
    if not _batchable(self, score_factors, rescale, with_nms):
        return MMDET_PREDICT_BY_FEAT(self, cls_scores, bbox_preds, score_factors,
                                     batch_img_metas, cfg, rescale, with_nms)
    cfg = self.test_cfg if cfg is None else cfg
    nms_pre = cfg.get('nms_pre', -1)
    num_imgs = cls_scores[0].size(0)
    mlvl_priors = self.prior_generator.grid_priors(
        [score.shape[-2:] for score in cls_scores], dtype=cls_scores[0].dtype,
        device=cls_scores[0].device)
    mlvl_scores, mlvl_deltas, mlvl_anchors, level_ids = [], [], [], []
    for level, (cls_score, bbox_pred, priors) in enumerate(zip(cls_scores, bbox_preds,
                                                               mlvl_priors)):
        # (B, A, H, W) -> (B, H * W * A): each row in mmdet's per-image order
        scores = cls_score.detach().permute(0, 2, 3, 1).reshape(num_imgs, -1).sigmoid()
        deltas = bbox_pred.detach().permute(0, 2, 3, 1).reshape(num_imgs, -1, 4)
        if 0 < nms_pre < scores.size(1):
            # each row sorted as mmdet sorts each image's (sort, not topk: mmdet's tie order)
            scores, order = scores.sort(dim=1, descending=True)
            scores, order = scores[:, :nms_pre], order[:, :nms_pre]
            deltas = deltas.gather(1, order[..., None].expand(-1, -1, 4))
            priors = priors[order]
        else:
            priors = priors.expand(num_imgs, -1, -1)
        mlvl_scores.append(scores)
        mlvl_deltas.append(deltas)
        mlvl_anchors.append(priors)
        level_ids.append(scores.new_full((scores.size(1), ), level, dtype=torch.long))
    scores = torch.cat(mlvl_scores, dim=1)
    anchors = torch.cat(mlvl_anchors, dim=1)
    # one decoding for all images (element-wise), then each image's clip, as mmdet's decode
    # clips it to ``img_shape``
    bboxes = self.bbox_coder.decode(anchors.reshape(-1, 4),
                                    torch.cat(mlvl_deltas, dim=1).reshape(-1, 4))
    bboxes = bboxes.view(num_imgs, -1, 4)
    level_ids = torch.cat(level_ids)
    results = []
    for img_id, img_meta in enumerate(batch_img_metas):
        height, width = img_meta['img_shape'][:2]
        bboxes[img_id, :, 0::2].clamp_(min=0, max=width)
        bboxes[img_id, :, 1::2].clamp_(min=0, max=height)
        proposals = InstanceData(bboxes=bboxes[img_id], scores=scores[img_id],
                                 level_ids=level_ids)
        results.append(self._bbox_post_process(proposals, cfg, rescale=False, with_nms=True,
                                               img_meta=img_meta))
    return results


def _losses_batchable(head: RPNHead) -> bool:
    """Whether ``head``'s losses are mmdet's RPN losses that ``batched_loss_by_feat`` reproduces:
    per level, sigmoid cross-entropy and L1 on the deltas, averaged over the sampled anchors."""
    cls, box = head.loss_cls, head.loss_bbox
    return (type(head).loss_by_feat_single is AnchorHead.loss_by_feat_single
            and not head.reg_decoded_bbox and type(cls) is CrossEntropyLoss and cls.use_sigmoid
            and not cls.use_mask and cls.class_weight is None and not cls.avg_non_ignore
            and cls.reduction == 'mean' and type(box) is L1Loss and box.reduction == 'mean')


def _sum_per_level(losses: torch.Tensor, counts: List[int], avg_factor,
                   loss_weight: float) -> List[torch.Tensor]:
    """(N, k) element-wise losses, levels in turn -> per level, weight_reduce_loss's 'mean'
    with ``avg_factor`` (the sum over avg_factor + eps), times the loss's weight."""
    sums = torch.stack([part.sum() for part in losses.split(counts)])
    eps = torch.finfo(torch.float32).eps
    return list((loss_weight * (sums / (avg_factor + eps))).unbind())


def batched_loss_by_feat(self: RPNHead, cls_scores: List[torch.Tensor],
                         bbox_preds: List[torch.Tensor], batch_gt_instances,
                         batch_img_metas: List[dict], batch_gt_instances_ignore=None) -> dict:
    """``RPNHead.loss_by_feat`` with every level's element-wise losses computed at once.

    Args:
        cls_scores: per level, (B, A, H, W) objectness logits.
        bbox_preds: per level, (B, A * 4, H, W) box deltas.

    Returns:
        ``loss_rpn_cls`` and ``loss_rpn_bbox``: per level, a scalar, as mmdet's.
    """
    if not _losses_batchable(self):
        return MMDET_LOSS_BY_FEAT(self, cls_scores, bbox_preds, batch_gt_instances,
                                  batch_img_metas, batch_gt_instances_ignore)
    anchor_list, valid_flag_list = self.get_anchors(
        [score.size()[-2:] for score in cls_scores], batch_img_metas,
        device=cls_scores[0].device)
    labels, label_weights, bbox_targets, bbox_weights, avg_factor = self.get_targets(
        anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
        batch_gt_instances_ignore=batch_gt_instances_ignore)

    def levels_in_turn(per_level: List[torch.Tensor], width: int) -> torch.Tensor:
        """per level (B, ..., width) -> (N, width), each level flattened as mmdet's
        loss_by_feat_single flattens it (image by image), the levels one after another."""
        return torch.cat([t.reshape(-1, width) for t in per_level])

    def predictions(per_level: List[torch.Tensor], width: int) -> torch.Tensor:
        return levels_in_turn([t.permute(0, 2, 3, 1) for t in per_level], width)

    counts = [t.numel() for t in labels]  # B * H * W * A per level
    loss_cls = binary_cross_entropy(
        predictions(cls_scores, self.cls_out_channels), levels_in_turn(labels, 1).view(-1),
        levels_in_turn(label_weights, 1).view(-1), reduction='none',
        ignore_index=-100 if self.loss_cls.ignore_index is None else self.loss_cls.ignore_index)
    loss_bbox = l1_loss(predictions(bbox_preds, self.bbox_coder.encode_size),
                        levels_in_turn(bbox_targets, bbox_targets[0].size(-1)),
                        levels_in_turn(bbox_weights, bbox_weights[0].size(-1)), reduction='none')
    return dict(
        loss_rpn_cls=_sum_per_level(loss_cls, counts, avg_factor, self.loss_cls.loss_weight),
        loss_rpn_bbox=_sum_per_level(loss_bbox, counts, avg_factor, self.loss_bbox.loss_weight))


def use_fast_rpn(enabled: bool = True):
    """Cached anchors, batched RPN proposals and losses (this module's), or mmdet's own code
    back."""
    AnchorGenerator.grid_priors = cached_grid_priors if enabled else MMDET_GRID_PRIORS
    AnchorGenerator.valid_flags = cached_valid_flags if enabled else MMDET_VALID_FLAGS
    RPNHead.predict_by_feat = batched_predict_by_feat if enabled else MMDET_PREDICT_BY_FEAT
    RPNHead.loss_by_feat = batched_loss_by_feat if enabled else MMDET_LOSS_BY_FEAT
