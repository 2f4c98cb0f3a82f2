"""Detection and segmentation: the neck, the six paper configs, and pretrained loading."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmvminet.models import CheckpointMismatchError, SimpleFeaturePyramid, VMINet
from mmvminet.models.simple_fpn import LayerNorm2d
from mmvminet.registry import build_model

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIGS = [f'configs/mask_rcnn_vminet_{a}_1x.py' for a in ('xs', 's', 'b')]
SEG_CONFIGS = [f'configs/upernet_vminet_{a}_160k_ade20k.py' for a in ('xs', 's', 'b')]


def load(path):
    return Config.fromfile(osp.join(ROOT, path))


@pytest.mark.parametrize('size', [(64, 64), (40, 58)])
def test_neck_strides_and_channels(size):
    neck = SimpleFeaturePyramid(in_channels=(24, 48, 96, 192), out_channels=32, num_outs=5)
    h, w = size
    outs = neck((torch.randn(2, 192, h, w), ))
    assert [o.shape for o in outs] == [
        (2, 32, h * 8, w * 8), (2, 32, h * 4, w * 4), (2, 32, h * 2, w * 2), (2, 32, h, w),
        (2, 32, -(-h // 2), -(-w // 2))]


def test_neck_on_backbone_gives_strides_4_to_64():
    backbone = VMINet('ti', out_indices=(3, ))
    neck = SimpleFeaturePyramid(backbone.out_channels, 16, num_outs=5, norm_cfg=dict(type='GN',
                                                                                    num_groups=4))
    outs = neck(backbone(torch.randn(1, 3, 256, 192)))
    assert [(o.shape[2], o.shape[3]) for o in outs] == [(64, 48), (32, 24), (16, 12), (8, 6),
                                                       (4, 3)]


def test_neck_rejects_bad_scales():
    with pytest.raises(ValueError, match='unsupported scale factor 3'):
        SimpleFeaturePyramid(64, 16, scale_factors=(3, 1), num_outs=2)


def test_layer_norm_2d_normalises_channels_into_contiguous_memory():
    torch.manual_seed(0)
    norm = LayerNorm2d(8, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 8, 5, 7)
    out = norm(x)
    mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-6) * norm.weight[:, None, None] \
        + norm.bias[:, None, None]
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous()


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)])
@pytest.mark.parametrize('norm', ['LayerNorm2d', 'GN'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_neck_maps_give_rois_their_own_features_and_gradients(device, norm, channels_last):
    """The paper detector's fault: mmcv's RoIAlign reads its input's memory as NCHW whatever the
    strides, and LayerNorm2d returned channels-last memory, so every RoI feature came from the
    wrong places. mmdet's RoI extractor on the neck's maps must agree, forward and backward, with
    torchvision's stride-aware roi_align."""
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    from torchvision.ops import roi_align as reference_roi_align
    torch.manual_seed(0)
    norm_cfg = dict(type=norm, num_groups=4) if norm == 'GN' else dict(type=norm, eps=1e-6)
    neck = SimpleFeaturePyramid(64, 16, num_outs=5, norm_cfg=norm_cfg).to(device)
    x = torch.randn(2, 64, 16, 20, device=device)
    if channels_last:  # a model moved to channels-last memory: the convs keep that format
        neck, x = neck.to(memory_format=torch.channels_last), x.contiguous(
            memory_format=torch.channels_last)
    maps = neck(x)[:4]  # strides 4, 8, 16, 32 of a 512x640 image
    strides = [4, 8, 16, 32]
    extractor = SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                   out_channels=16, featmap_strides=strides)
    rois = torch.tensor([[0, 8., 8., 60., 40.], [1, 20., 30., 180., 170.],
                         [0, 0., 0., 300., 260.], [1, 10., 10., 600., 500.],
                         [0, 40., 10., 70., 90.]], device=device)
    levels = extractor.map_roi_levels(rois, len(strides))
    assert levels.tolist() == [0, 1, 2, 3, 0]  # finest_scale 56: under 112 px on stride 4...
    expected = torch.zeros(len(rois), 16, 7, 7, device=device)
    for level, stride in enumerate(strides):
        chosen = levels == level
        if chosen.any():
            expected[chosen] = reference_roi_align(maps[level], rois[chosen], 7, 1 / stride,
                                                   sampling_ratio=0, aligned=True)
    weights = torch.randn(len(rois), 16, 7, 7, device=device)
    params = list(neck.parameters())
    reference_grads = torch.autograd.grad((expected * weights).sum(), params, retain_graph=True)
    feats = extractor(maps, rois)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)
    grads = torch.autograd.grad((feats * weights).sum(), params)
    for grad, reference in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-4, atol=1e-5)


def test_recipes_follow_the_paper():
    det = load(DET_CONFIGS[1])
    assert det.optim_wrapper.optimizer.type == 'AdamW' and det.optim_wrapper.optimizer.lr == 1e-4
    assert det.optim_wrapper.type == 'AmpOptimWrapper' and det.optim_wrapper.dtype == 'float16'
    assert det.train_cfg.max_epochs == 12
    assert det.param_scheduler[1].milestones == [9, 11]
    assert det.train_dataloader.batch_size * 8 == 16
    assert det.model.backbone.init_cfg.prefix == 'backbone.'
    seg = load(SEG_CONFIGS[1])
    opt = seg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.weight_decay) == ('AdamW', 6e-5, 0.01)
    assert seg.param_scheduler[0].end == 1500 and seg.param_scheduler[1].power == 1.0
    assert seg.train_cfg.max_iters == 160000 and seg.train_dataloader.batch_size * 8 == 16
    assert seg.crop_size == (512, 512) and seg.sync_bn == 'torch'
    assert seg.model.backbone.norm_cfg.type == 'SyncBN'


def det_inputs(model, h=96, w=128):
    from mmdet.testing import demo_mm_inputs
    packed = demo_mm_inputs(batch_size=1, image_shapes=[(3, h, w)], num_items=[3],
                            with_mask=True)
    return model.data_preprocessor(packed, True)


@pytest.mark.parametrize('config', DET_CONFIGS)
def test_mask_rcnn_config_loss_and_predict_step(config):
    torch.manual_seed(0)
    model = build_model(load(config).model, 'mmdet')
    model.train()
    data = det_inputs(model)
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    total = sum(v.sum() for k, v in losses.items() if 'loss' in k and isinstance(v, torch.Tensor))
    total.backward()
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        results = model(**det_inputs(model), mode='predict')
    pred = results[0].pred_instances
    assert {'bboxes', 'scores', 'labels', 'masks'} <= set(pred.keys())


def seg_inputs(model, h=64, w=64, num_classes=150, batch=2):
    """Two images: the pyramid-pooling BatchNorm needs more than one value per channel."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(batch):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=torch.randint(0, num_classes, (1, h, w)))
        sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                 scale_factor=(1.0, 1.0), flip=False))
        samples.append(sample)
    packed = dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8)] * batch,
                  data_samples=samples)
    return model.data_preprocessor(packed, True)


@pytest.mark.parametrize('config', SEG_CONFIGS)
def test_upernet_config_loss_and_predict_step(config):
    torch.manual_seed(0)
    cfg = load(config)
    cfg.model.data_preprocessor.size = (64, 64)
    model = build_model(cfg.model, 'mmseg')
    model.train()
    losses = model(**seg_inputs(model), mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    total = losses['decode.loss_ce'] + losses['aux.loss_ce']
    total.backward()
    assert torch.isfinite(total)
    model.eval()
    with torch.no_grad():
        results = model(**seg_inputs(model), mode='predict')
    assert results[0].pred_sem_seg.data.shape == (1, 64, 64)


@pytest.fixture
def xs_classifier_checkpoint(tmp_path):
    torch.manual_seed(3)
    classifier = build_model(load('configs/vminet_xs_in1k.py').model, 'mmpretrain')
    path = tmp_path / 'vminet_xs_in1k.pth'
    torch.save({'state_dict': classifier.state_dict(), 'meta': {}}, path)
    return str(path), classifier.backbone.state_dict()


@pytest.mark.parametrize('scope,config', [('mmdet', DET_CONFIGS[0]), ('mmseg', SEG_CONFIGS[0])])
def test_pretrained_classifier_loads_into_dense_backbones(scope, config, xs_classifier_checkpoint):
    path, expected = xs_classifier_checkpoint
    cfg = load(config)
    cfg.model.backbone.init_cfg.checkpoint = path
    model = build_model(cfg.model, scope)
    model.init_weights()
    loaded = model.backbone.state_dict()
    assert set(loaded) == set(expected)  # zero missing backbone keys
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_pretrained_without_prefix_still_loads_everything(xs_classifier_checkpoint):
    path, expected = xs_classifier_checkpoint
    backbone = VMINet('xs', init_cfg=dict(type='Pretrained', checkpoint=path))
    backbone.init_weights()
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in expected.items())


def test_wrong_variant_checkpoint_is_an_error(xs_classifier_checkpoint):
    path, _ = xs_classifier_checkpoint
    backbone = VMINet('b', init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    with pytest.raises(CheckpointMismatchError, match='first mismatching key'):
        backbone.init_weights()
    missing = VMINet('xs', init_cfg=dict(type='Pretrained', checkpoint=path + '.nope'))
    with pytest.raises(FileNotFoundError, match=r'checkpoint not found: .*\.nope'):
        missing.init_weights()


@pytest.mark.parametrize('config', sorted(
    osp.relpath(p, ROOT) for p in glob.glob(osp.join(ROOT, 'configs', 'quickstart', 'ablations',
                                                     '*.py'))))
def test_quickstart_ablation_configs_build(config):
    """tools/analysis/quickstart_ablation.sh trains these: each must load and build."""
    cfg = load(config)
    model = build_model(cfg.model, cfg.default_scope)
    assert sum(p.numel() for p in model.parameters()) > 0
