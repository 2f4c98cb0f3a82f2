"""mmvminet.det_targets: Mask R-CNN's mask targets on the device and the sync-free MaxIoUAssigner
equal mmdet's."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

from mmvminet import det_targets
from mmvminet.hooks import FastDetTrainHook
from mmvminet.registry import build_model

pytest.importorskip('mmdet')
from mmdet.models.roi_heads.mask_heads import fcn_mask_head  # noqa: E402
from mmdet.models.task_modules.assigners import MaxIoUAssigner  # noqa: E402
from mmdet.structures.mask import BitmapMasks, PolygonMasks, mask_target  # noqa: E402

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)]


@pytest.fixture(autouse=True)
def mmdet_targets_after():
    yield
    det_targets.use_fast_det_train(False)


def image(rng, height, width, num_gt, num_pos, device):
    """Blob masks, and positives of every kind: inside, across and outside the image's edges,
    degenerate, assigned to any mask."""
    yy, xx = np.mgrid[:height, :width]
    masks = []
    for _ in range(num_gt):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, height / 2)
        masks.append(((yy - cy)**2 + (xx - cx)**2 < r * r).astype(np.uint8))
    x1 = rng.uniform(-0.3 * width, width, num_pos)
    y1 = rng.uniform(-0.3 * height, height, num_pos)
    boxes = np.stack([x1, y1, x1 + rng.uniform(0, 0.8 * width, num_pos),
                      y1 + rng.uniform(0, 0.8 * height, num_pos)], 1)
    if num_pos:
        boxes[0, 2:] = boxes[0, :2]  # zero area
    return (torch.tensor(boxes, dtype=torch.float32, device=device),
            torch.tensor(rng.integers(0, num_gt, num_pos), device=device),
            BitmapMasks(np.stack(masks), height, width))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('soft', [False, True])
def test_targets_equal_mmdets(device, soft):
    rng = np.random.default_rng(0)
    images = [image(rng, 67, 91, 5, 40, device), image(rng, 80, 48, 1, 7, device),
              image(rng, 50, 60, 3, 0, device)]  # an image without positives
    cfg = ConfigDict(mask_size=(28, 21), soft_mask_target=soft)
    ours = det_targets.mask_target(*zip(*images), cfg)
    theirs = mask_target(*zip(*images), cfg)
    assert ours.shape == (47, 28, 21) and ours.dtype == theirs.dtype == torch.float32
    assert ours.device == theirs.device
    assert torch.equal(ours, theirs)
    if not soft:
        assert 0 < ours.mean() < 1 and set(ours.unique().tolist()) == {0.0, 1.0}
    else:
        assert ((ours > 0) & (ours < 1)).any()


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('pad_val', [0, 1])
def test_masks_padded_on_the_device_give_mmdets_padded_targets(device, pad_val):
    """DevicePaddedMasks stands for mmdet's BitmapMasks.pad result: its size, its array when
    read on the host, and, padded on the device by mask_target, its targets, with boxes that
    reach into the padding (where padding changes roi_align's samples)."""
    rng = np.random.default_rng(3)
    boxes, inds, masks = image(rng, 67, 91, 5, 40, device)
    boxes = boxes * 1.3  # further into the padding below and right
    padded = masks.pad((96, 128), pad_val=pad_val)
    lazy = det_targets.DevicePaddedMasks(masks, (96, 128, 3), pad_val)
    assert (lazy.height, lazy.width, len(lazy)) == (96, 128, 5)
    cfg = ConfigDict(mask_size=28)
    ours = det_targets.mask_target([boxes], [inds], [lazy], cfg)
    assert lazy._padded is None  # padded on the device only
    assert torch.equal(ours, mask_target([boxes], [inds], [padded], cfg))
    assert not torch.equal(ours, mask_target([boxes], [inds], [masks], cfg))  # padding counts
    assert np.array_equal(lazy.masks, padded.masks)  # read on the host: mmdet's array
    assert np.array_equal(lazy[[1, 3]].masks, padded[[1, 3]].masks)


def test_the_preprocessor_leaves_bitmap_masks_to_the_device():
    from mmdet.structures import DetDataSample
    preprocessor = build_model(dict(type='DetDataPreprocessor', pad_mask=True,
                                    pad_size_divisor=32), 'mmdet')
    rng = np.random.default_rng(4)
    samples = []
    for masks in (image(rng, 67, 91, 3, 1, 'cpu')[2],
                  PolygonMasks([[np.array([1.0, 1, 25, 2, 24, 22])]], 40, 50)):
        sample = DetDataSample(metainfo=dict(img_shape=(masks.height, masks.width)))
        sample.gt_instances = InstanceData(masks=masks, labels=torch.zeros(len(masks)).long())
        samples.append(sample)
    inputs = [torch.zeros(3, 67, 91, dtype=torch.uint8), torch.zeros(3, 40, 50, dtype=torch.uint8)]
    det_targets.use_fast_det_train(True)
    out = preprocessor(dict(inputs=inputs, data_samples=samples), training=True)
    bitmap, polygon = (s.gt_instances.masks for s in out['data_samples'])
    assert isinstance(bitmap, det_targets.DevicePaddedMasks)
    assert (bitmap.height, bitmap.width) == (96, 96) == tuple(out['inputs'].shape[-2:])
    assert type(polygon) is PolygonMasks and (polygon.height, polygon.width) == (96, 96)
    unpadded = bitmap.unpadded
    again = preprocessor(out, training=True)  # a batch used twice (benchmark_dense.py)
    masks = again['data_samples'][0].gt_instances.masks
    assert masks.unpadded is unpadded and masks._padded is None
    det_targets.use_fast_det_train(False)
    assert det_targets.DetDataPreprocessor.pad_gt_masks is det_targets.MMDET_PAD_GT_MASKS


def test_polygon_masks_and_no_positives_keep_mmdets_path():
    boxes = torch.tensor([[2.0, 3.0, 20.0, 18.0]])
    polygons = PolygonMasks([[np.array([1.0, 1, 25, 2, 24, 22, 3, 20])]], 30, 30)
    cfg = ConfigDict(mask_size=7)
    assert torch.equal(det_targets.mask_target([boxes], [torch.tensor([0])], [polygons], cfg),
                       mask_target([boxes], [torch.tensor([0])], [polygons], cfg))
    empty = det_targets.mask_target([boxes[:0]], [torch.tensor([], dtype=torch.long)],
                                    [BitmapMasks(np.zeros((2, 30, 30), np.uint8), 30, 30)], cfg)
    assert empty.shape == (0, 7, 7)


def test_the_hook_points_mask_heads_at_it_for_the_run():
    rng = np.random.default_rng(1)
    boxes, inds, masks = image(rng, 64, 64, 4, 12, 'cpu')
    torch.manual_seed(0)
    # by scope: another test's default scope would give mmseg's CrossEntropyLoss
    head = build_model(dict(type='FCNMaskHead', num_convs=1, in_channels=8,
                            conv_out_channels=8, num_classes=3), 'mmdet')
    # the fields of mmdet's SamplingResult that the mask head reads
    result = SimpleNamespace(pos_priors=boxes, pos_assigned_gt_inds=inds,
                             pos_gt_labels=torch.tensor([0, 1, 2, 1])[inds])
    gt = InstanceData(masks=masks, labels=torch.tensor([0, 1, 2, 1]))
    preds = torch.randn(12, 3, 28, 28)
    train_cfg = ConfigDict(mask_size=28)

    def loss():
        return head.loss_and_target(preds, [result], [gt], train_cfg)

    reference = loss()
    hook = FastDetTrainHook()
    hook.before_run(None)
    assert fcn_mask_head.mask_target is det_targets.mask_target
    fast = loss()
    assert torch.equal(fast['mask_targets'], reference['mask_targets'])
    assert torch.equal(fast['loss_mask']['loss_mask'], reference['loss_mask']['loss_mask'])
    assert MaxIoUAssigner.assign_wrt_overlaps is det_targets.assign_wrt_overlaps
    hook.after_run(None)
    assert fcn_mask_head.mask_target is mask_target
    assert MaxIoUAssigner.assign_wrt_overlaps is det_targets.MMDET_ASSIGN_WRT_OVERLAPS


def overlaps_with_ties(rng, num_gts, num_priors, device):
    """(G, N) IoU-like values on a coarse grid, so that priors tie for a ground truth's best and
    ground truths tie for a prior, and some exactly at the thresholds; a few ignored (-1)."""
    values = rng.integers(0, 11, (num_gts, num_priors)) / 10
    values[rng.random((num_gts, num_priors)) < 0.05] = -1
    return torch.tensor(values, dtype=torch.float32, device=device)


ASSIGNERS = [  # Mask R-CNN's RPN and RoI assigners, and the other options' branches
    dict(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True),
    dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=True),
    dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5, match_low_quality=False),
    dict(pos_iou_thr=0.5, neg_iou_thr=(0.1, 0.4), min_pos_iou=0.0),
    dict(pos_iou_thr=0.6, neg_iou_thr=0.4, min_pos_iou=0.2, gt_max_assign_all=False),
]


def max_iou_assigner(**options) -> MaxIoUAssigner:
    """Built in mmdet's scope: its IoU calculator comes from the registry of the default scope,
    which another test may have left at mmpretrain's."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MaxIoUAssigner(**options)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('options', ASSIGNERS)
def test_sync_free_assigner_equals_mmdets(device, options):
    assigner = max_iou_assigner(**options)
    rng = np.random.default_rng(2)
    for num_gts, num_priors in ((7, 300), (1, 50), (20, 40), (3, 1), (0, 30), (4, 0)):
        overlaps = overlaps_with_ties(rng, num_gts, num_priors, device)
        labels = torch.tensor(rng.integers(0, 80, num_gts), device=device)
        theirs = det_targets.MMDET_ASSIGN_WRT_OVERLAPS(assigner, overlaps, labels)
        ours = det_targets.assign_wrt_overlaps(assigner, overlaps, labels)
        assert ours.num_gts == theirs.num_gts
        for key in ('gt_inds', 'max_overlaps', 'labels'):
            mine, reference = getattr(ours, key), getattr(theirs, key)
            assert mine.dtype == reference.dtype and mine.device == reference.device, key
            assert torch.equal(mine, reference), (key, num_gts, num_priors)
        if num_gts > 1 and num_priors > 1 and options.get('match_low_quality', True):
            # the low-quality step did decide something here: not a vacuous comparison
            without = max_iou_assigner(**dict(options, match_low_quality=False))
            plain = det_targets.MMDET_ASSIGN_WRT_OVERLAPS(without, overlaps, labels)
            assert not torch.equal(plain.gt_inds, theirs.gt_inds)


def test_sync_free_assigner_in_a_whole_assign():
    """Through MaxIoUAssigner.assign (boxes to IoUs), as the RPN calls it, once patched."""
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 200, (500, 2))
    priors = torch.tensor(np.concatenate([xy, xy + rng.uniform(4, 80, (500, 2))], 1),
                          dtype=torch.float32)
    gt = InstanceData(bboxes=priors[rng.choice(500, 9, replace=False)] + 1.5,
                      labels=torch.tensor(rng.integers(0, 5, 9)))
    assigner = max_iou_assigner(**ASSIGNERS[0])
    reference = assigner.assign(InstanceData(priors=priors), gt)
    det_targets.use_sync_free_assigner(True)
    ours = assigner.assign(InstanceData(priors=priors), gt)
    assert torch.equal(ours.gt_inds, reference.gt_inds)
    assert torch.equal(ours.labels, reference.labels)
    assert (reference.gt_inds > 0).sum() >= 9  # every ground truth matched something
