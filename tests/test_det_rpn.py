"""mmvminet.det_rpn: cached anchors, batched RPN proposals and losses give mmdet's values."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope

from mmvminet import det_rpn, det_targets
from mmvminet.hooks import FastDetTrainHook
from mmvminet.registry import build_model

pytest.importorskip('mmdet')
from mmdet.models.dense_heads import RPNHead  # noqa: E402
from mmdet.models.task_modules.prior_generators import AnchorGenerator  # noqa: E402

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)]
# mmdet's Mask R-CNN RPN (configs/_base_/models/mask-rcnn_r50_fpn.py), fewer channels
RPN = dict(type='RPNHead', in_channels=8, feat_channels=8,
           anchor_generator=dict(type='AnchorGenerator', scales=[8], ratios=[0.5, 1.0, 2.0],
                                 strides=[4, 8, 16, 32, 64]),
           bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                           target_stds=[1.0, 1.0, 1.0, 1.0]))


@pytest.fixture(autouse=True)
def mmdet_code_after():
    yield
    det_targets.use_fast_det_train(False)


def proposal_cfg(nms_pre):
    return ConfigDict(nms_pre=nms_pre, max_per_img=100, nms=dict(type='nms', iou_threshold=0.7),
                      min_bbox_size=0)


def rpn_outputs(seed, num_imgs, pad_hw, device, dtype=torch.float32, ties=False):
    """Per level (B, 3, H, W) logits and (B, 12, H, W) deltas of a pad_hw batch; with ties,
    logits on a coarse grid, so that many scores are equal."""
    gen = torch.Generator().manual_seed(seed)
    scores, deltas = [], []
    for stride in (4, 8, 16, 32, 64):
        size = (-(-pad_hw[0] // stride), -(-pad_hw[1] // stride))
        logits = torch.randn(num_imgs, 3, *size, generator=gen) * 2
        if ties:
            logits = logits.round()
        scores.append(logits.to(device, dtype))
        deltas.append((torch.randn(num_imgs, 12, *size, generator=gen) * 0.5).to(device, dtype))
    return scores, deltas


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('nms_pre', [60, 1000, -1])
def test_batched_proposals_equal_mmdets(device, ties, nms_pre):
    """Each image's proposals as mmdet computes them alone: the same boxes and scores in the same
    order, with images of other sizes in the batch (each clipped to its own), and nms_pre
    smaller than some levels (sorted and cut) and larger than all (kept whole)."""
    head = build_model(RPN, 'mmdet').to(device)
    metas = [dict(img_shape=(96, 128), pad_shape=(96, 160)),
             dict(img_shape=(80, 160), pad_shape=(96, 160)),
             dict(img_shape=(96, 100), pad_shape=(96, 160))]
    scores, deltas = rpn_outputs(0, len(metas), (96, 160), device, ties=ties)
    cfg = proposal_cfg(nms_pre)
    reference = det_rpn.MMDET_PREDICT_BY_FEAT(head, scores, deltas, batch_img_metas=metas,
                                              cfg=cfg)
    batched = det_rpn.batched_predict_by_feat(head, scores, deltas, batch_img_metas=metas,
                                              cfg=cfg)
    assert len(batched) == len(reference) == 3
    for ours, theirs in zip(batched, reference):
        assert len(theirs) > 10
        assert set(ours.keys()) == set(theirs.keys()) == {'bboxes', 'scores', 'labels'}
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(ours.get(key), theirs.get(key)), key
    # images clipped to their own size, not the batch's
    assert batched[0].bboxes[:, 0::2].max() <= 128 and batched[1].bboxes[:, 1::2].max() <= 80


@pytest.mark.gpu
def test_batched_proposals_equal_mmdets_in_fp16_autocast():
    """As the fp16 AMP training step computes them: fp16 logits and anchors."""
    head = build_model(RPN, 'mmdet').cuda()
    metas = [dict(img_shape=(800, 1216), pad_shape=(800, 1216)),
             dict(img_shape=(760, 1200), pad_shape=(800, 1216))]
    scores, deltas = rpn_outputs(1, 2, (800, 1216), 'cuda', torch.float16)
    cfg = proposal_cfg(2000)
    with torch.autocast('cuda', torch.float16):
        reference = det_rpn.MMDET_PREDICT_BY_FEAT(head, scores, deltas, batch_img_metas=metas,
                                                  cfg=cfg)
        batched = det_rpn.batched_predict_by_feat(head, scores, deltas, batch_img_metas=metas,
                                                  cfg=cfg)
    for ours, theirs in zip(batched, reference):
        for key in ('bboxes', 'scores', 'labels'):
            assert torch.equal(ours.get(key), theirs.get(key)), key


def test_other_heads_keep_mmdets_proposals(monkeypatch):
    """A subclass with its own per-image step, or a box coder this module does not reproduce,
    goes through mmdet's predict_by_feat."""
    calls = []

    def mmdet_own(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return []

    monkeypatch.setattr(det_rpn, 'MMDET_PREDICT_BY_FEAT', mmdet_own)

    class OwnStep(RPNHead):
        def _predict_by_feat_single(self, *args, **kwargs):
            raise AssertionError('not reached')

    scores, deltas = rpn_outputs(0, 1, (64, 64), 'cpu')
    metas = [dict(img_shape=(64, 64))]
    with DefaultScope.overwrite_default_scope('mmdet'):  # its coder, by mmdet's registry
        head = OwnStep(**{k: v for k, v in RPN.items() if k != 'type'})
    det_rpn.batched_predict_by_feat(head, scores, deltas, batch_img_metas=metas,
                                    cfg=proposal_cfg(100))
    plain = build_model(RPN, 'mmdet')
    det_rpn.batched_predict_by_feat(plain, scores, deltas, batch_img_metas=metas,
                                    cfg=proposal_cfg(100), rescale=True)
    assert calls == ['OwnStep', 'RPNHead']


RPN_TRAIN = ConfigDict(
    assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3,
                  match_low_quality=True, ignore_iof_thr=-1),
    sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1,
                 add_gt_as_proposals=False),
    allowed_border=-1, pos_weight=-1, debug=False)


def ground_truths(seed, counts, pad_hw):
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(seed)
    gts = []
    for count in counts:
        xy = torch.rand(count, 2, generator=gen) * torch.tensor(pad_hw[::-1]) * 0.7
        wh = 8 + torch.rand(count, 2, generator=gen) * 40
        gts.append(InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                                labels=torch.zeros(count, dtype=torch.long)))
    return gts


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('counts', [(3, 5), (0, 2), (0, 0)])  # (0, 0): no positive anywhere
@pytest.mark.parametrize('bbox_loss_weight', [1.0, 2.0])
def test_batched_losses_equal_mmdets(device, counts, bbox_loss_weight):
    """Each level's two losses and the gradients of the logits and deltas, as mmdet's per-level
    losses give them (the same sampled anchors: the same seed); up to the rounding of the
    per-level sums, which on the CPU is none."""
    head = build_model(dict(RPN, train_cfg=RPN_TRAIN,
                            loss_bbox=dict(type='L1Loss', loss_weight=bbox_loss_weight)),
                       'mmdet').to(device)
    assert det_rpn._losses_batchable(head)
    metas = [dict(img_shape=(96, 128), pad_shape=(96, 160)),
             dict(img_shape=(96, 160), pad_shape=(96, 160))]
    gts = [gt.to(device) for gt in ground_truths(3, counts, (96, 160))]
    results = []
    for loss_by_feat in (det_rpn.MMDET_LOSS_BY_FEAT, det_rpn.batched_loss_by_feat):
        scores, deltas = rpn_outputs(0, 2, (96, 160), device)
        for t in scores + deltas:
            t.requires_grad_()
        torch.manual_seed(5)  # the sampler's draws
        losses = loss_by_feat(head, scores, deltas, gts, metas)
        sum(losses['loss_rpn_cls'] + losses['loss_rpn_bbox']).backward()
        results.append((losses, [t.grad for t in scores + deltas]))
    (theirs, their_grads), (ours, our_grads) = results
    exact = device == 'cpu'
    for key in ('loss_rpn_cls', 'loss_rpn_bbox'):
        assert len(ours[key]) == len(theirs[key]) == 5
        for a, b in zip(ours[key], theirs[key]):
            assert torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-6, atol=0), key
    for a, b in zip(our_grads, their_grads):
        assert torch.equal(a, b) if exact else torch.allclose(a, b, rtol=1e-6, atol=1e-12)
    assert all(loss > 0 for loss in ours['loss_rpn_cls'])
    assert any(loss > 0 for loss in ours['loss_rpn_bbox']) == any(counts)


def test_other_rpn_losses_keep_mmdets(monkeypatch):
    calls = []
    monkeypatch.setattr(det_rpn, 'MMDET_LOSS_BY_FEAT',
                        lambda self, *args: calls.append(type(self.loss_bbox).__name__))
    head = build_model(dict(RPN, train_cfg=RPN_TRAIN,
                            loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0)), 'mmdet')
    assert not det_rpn._losses_batchable(head)
    scores, deltas = rpn_outputs(0, 1, (64, 64), 'cpu')
    det_rpn.batched_loss_by_feat(head, scores, deltas, ground_truths(0, [1], (64, 64)),
                                 [dict(img_shape=(64, 64), pad_shape=(64, 64))])
    assert calls == ['SmoothL1Loss']


def test_cached_anchors_equal_mmdets_and_stay_unchanged():
    generator = AnchorGenerator(**{k: v for k, v in RPN['anchor_generator'].items()
                                   if k != 'type'})
    sizes = [torch.Size((24, 40)), torch.Size((12, 20)), (6, 10), (3, 5), (2, 3)]
    fresh = det_rpn.MMDET_GRID_PRIORS(generator, sizes, device='cpu')
    first = det_rpn.cached_grid_priors(generator, sizes, device='cpu')
    again = det_rpn.cached_grid_priors(generator, [tuple(s) for s in sizes], device='cpu')
    assert all(a is b for a, b in zip(first, again))  # computed once
    assert all(torch.equal(a, b) for a, b in zip(first, fresh))
    half = det_rpn.cached_grid_priors(generator, sizes, dtype=torch.float16, device='cpu')
    assert half[0].dtype == torch.float16  # another dtype, another entry
    flags = det_rpn.cached_valid_flags(generator, sizes, (90, 150, 3), device='cpu')
    other = det_rpn.cached_valid_flags(generator, sizes, (96, 100), device='cpu')
    for ours, pad in ((flags, (90, 150, 3)), (other, (96, 100))):
        mmdet = det_rpn.MMDET_VALID_FLAGS(generator, sizes, pad, device='cpu')
        assert all(torch.equal(a, b) for a, b in zip(ours, mmdet))
    assert not all(torch.equal(a, b) for a, b in zip(flags, other))
    for extra in range(1, det_rpn.CACHE_SIZE + 1):  # the oldest entries make room for new ones
        det_rpn.cached_grid_priors(generator, [(h + extra, w) for h, w in sizes], device='cpu')
    assert len(generator._mmvminet_cache['grid_priors']) == det_rpn.CACHE_SIZE
    assert det_rpn.cached_grid_priors(generator, sizes, device='cpu')[0] is not first[0]


@pytest.mark.gpu
def test_cached_anchors_keep_their_base_anchors_on_the_gpu():
    """No copy from the CPU when new sizes come: the base anchors move to the GPU once."""
    generator = AnchorGenerator(**{k: v for k, v in RPN['anchor_generator'].items()
                                   if k != 'type'})
    sizes = [(24, 40), (12, 20), (6, 10), (3, 5), (2, 3)]
    expected = det_rpn.MMDET_GRID_PRIORS(generator, sizes, device='cuda')
    ours = det_rpn.cached_grid_priors(generator, sizes, device='cuda')
    assert all(a.is_cuda for a in generator.base_anchors)
    assert all(torch.equal(a, b) for a, b in zip(ours, expected))
    other = [(h + 1, w) for h, w in sizes]
    assert all(torch.equal(a, b) for a, b in zip(
        det_rpn.cached_grid_priors(generator, other, dtype=torch.float16, device='cuda'),
        det_rpn.MMDET_GRID_PRIORS(generator, other, dtype=torch.float16, device='cuda')))


def test_a_whole_training_step_is_unchanged_and_keeps_the_cache_intact():
    """Mask R-CNN's losses and gradients with the hook (all of its changes: these and
    det_targets', the masks padded on the device included) equal mmdet's own path's, and the
    step leaves the cached anchors as they were computed (no caller writes into them)."""
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config

    cfg = Config.fromfile('configs/quickstart/mask_rcnn_vminet_ti_shapes.py')
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = build_model(cfg.model, 'mmdet').train()
    packed = demo_mm_inputs(2, [[3, 128, 160], [3, 112, 160]], num_items=[3, 4],
                            num_classes=3, with_mask=True)
    batches = []

    def losses_and_grads():
        model.zero_grad()
        torch.manual_seed(1)  # drop path and the samplers' draws
        batch = model.data_preprocessor(copy.deepcopy(packed), True)  # it pads in place
        batches.append(batch)
        losses = model.loss(batch['inputs'], batch['data_samples'])
        loss, _ = model.parse_losses(losses)
        loss.backward()
        # the RPN's losses are lists, one per level
        return ({k: torch.stack(v).detach() if isinstance(v, list) else v.detach()
                 for k, v in losses.items()},
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})

    ref_losses, ref_grads = losses_and_grads()
    hook = FastDetTrainHook()
    hook.before_run(None)
    assert RPNHead.predict_by_feat is det_rpn.batched_predict_by_feat
    assert RPNHead.loss_by_feat is det_rpn.batched_loss_by_feat
    assert det_rpn._losses_batchable(model.rpn_head)
    assert AnchorGenerator.grid_priors is det_rpn.cached_grid_priors
    losses, grads = losses_and_grads()
    losses_again, _ = losses_and_grads()  # this time from the cached anchors
    for key in ref_losses:
        assert torch.equal(losses[key], ref_losses[key]), key
        assert torch.equal(losses_again[key], losses[key]), key
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert torch.equal(grads[name], ref_grads[name]), name
    generator = model.rpn_head.prior_generator
    for kind, compute in (('grid_priors', det_rpn.MMDET_GRID_PRIORS),
                          ('valid_flags', det_rpn.MMDET_VALID_FLAGS)):
        cache = generator._mmvminet_cache[kind]
        assert cache
        for key, cached in cache.items():
            if kind == 'grid_priors':
                sizes, dtype, device = key
                expected = compute(generator, sizes, dtype=dtype, device=device)
            else:
                sizes, pad, device = key
                expected = compute(generator, sizes, pad, device=device)
            assert all(torch.equal(a, b) for a, b in zip(cached, expected))
    # the fast steps' masks were padded on the device only, the reference's on the host
    for batch, padded_on_host in zip(batches, (True, False, False)):
        for sample in batch['data_samples']:
            masks = sample.gt_instances.masks
            assert isinstance(masks, det_targets.DevicePaddedMasks) != padded_on_host
            assert padded_on_host or masks._padded is None
    hook.after_run(None)
    assert RPNHead.predict_by_feat is det_rpn.MMDET_PREDICT_BY_FEAT
    assert RPNHead.loss_by_feat is det_rpn.MMDET_LOSS_BY_FEAT
    assert AnchorGenerator.grid_priors is det_rpn.MMDET_GRID_PRIORS
    assert AnchorGenerator.valid_flags is det_rpn.MMDET_VALID_FLAGS
