"""Issue #8: every bad input stops tools/train.py and tools/test.py early with one line,
``error: ...``, naming the problem; NaN losses stop training; fp16 overflow steps are counted.

The tools run in this process (``main(argv)``) on tiny configs and data made in tmp_path;
tests/test_reliability_resume.py runs them as real processes.
"""
import functools
import glob
import json
import math
import os
import os.path as osp
import re
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.registry import HOOKS
from PIL import Image

from mmvminet.errors import NonFiniteLossError
from tool_scripts import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))




train_tool, test_tool = load_tool('train.py'), load_tool('test.py')

# A classifier of ~30k parameters on 32x32 crops: a few iterations take seconds on 2 cores.
CLS_CONFIG = '''
default_scope = 'mmpretrain'
custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
data_root = {data_root!r}
model = dict(type='ImageClassifier',
             backbone=dict(type='VMINet', arch=dict(base_dim=8, ratio=2, depths=[1, 1, 1, 1]),
                           out_indices=(3, ), drop_path_rate=0.1),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
                       loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=2, mean=[128.] * 3, std=[64.] * 3, to_rgb=True)
train_pipeline = [dict(type='LoadImageFromFile'),
                  dict(type='RandomResizedCrop', scale={crop}, crop_ratio_range=(0.5, 1.0)),
                  dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=({crop}, {crop})),
                 dict(type='PackInputs')]
train_dataloader = dict(batch_size=2, num_workers=0, drop_last=True,
                        sampler=dict(type='DefaultSampler', shuffle=True),
                        dataset=dict(type='CustomDataset', data_root=data_root,
                                     data_prefix='train', pipeline=train_pipeline))
test_dataloader = dict(batch_size=2, num_workers=0,
                       sampler=dict(type='DefaultSampler', shuffle=False),
                       dataset=dict(type='CustomDataset', data_root=data_root,
                                    data_prefix='train', pipeline=test_pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters})
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
param_scheduler = [dict(type='CosineAnnealingLR', T_max={iters}, by_epoch=False)]
default_hooks = dict(timer=dict(type='IterTimerHook'),
                     logger=dict(type='LoggerHook', interval=1),
                     param_scheduler=dict(type='ParamSchedulerHook'),
                     checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                     interval={interval}, max_keep_ckpts=3),
                     sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = {custom_hooks!r}
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=True)
'''


def make_cls_data(root):
    """root/train/{a,b}/: 3 RGB JPEGs each, plus a grayscale JPEG and an RGBA PNG."""
    rng = np.random.default_rng(0)
    for label in ('a', 'b'):
        os.makedirs(root / 'train' / label)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
                root / 'train' / label / f'{i}.jpg')
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), 'L').save(
        root / 'train' / 'a' / 'gray.jpg')
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), 'RGBA').save(
        root / 'train' / 'b' / 'rgba.png')
    return root


def write_cls_config(path, data_root, iters=2, interval=2, crop=32, custom_hooks=(),
                     imports=('mmvminet', )):
    path.write_text(CLS_CONFIG.format(imports=list(imports), data_root=str(data_root),
                                      iters=iters, interval=interval, crop=crop,
                                      custom_hooks=list(custom_hooks)))
    return str(path)


@pytest.fixture
def cls_data(tmp_path):
    return make_cls_data(tmp_path / 'data')


@pytest.fixture
def cls_config(tmp_path, cls_data):
    return write_cls_config(tmp_path / 'tiny_cls.py', cls_data)


def run_tool(tool, *argv, options=()):
    """Run a tool's main in this process; its exit message (None when it returned)."""
    # a fresh experiment name: mmengine keys loggers and message hubs by it, per process
    argv = [*argv, '--cfg-options', f'experiment_name=x{uuid.uuid4().hex}', *options]
    try:
        tool.main(argv)
    except SystemExit as e:
        message = str(e.code)
        assert message.startswith('error: ') and '\n' not in message, message
        return message
    return None


def test_missing_data_root_and_annotation_file(tmp_path, cls_config):
    from mmengine.config import Config

    from mmvminet.runner_utils import DataPathError, check_data_paths
    message = run_tool(train_tool, cls_config, '--work-dir', str(tmp_path / 'w'),
                       options=[f'data_root={tmp_path}/nowhere'])
    assert message == (f"error: train_dataloader: data_root '{tmp_path}/nowhere' does not "
                       'exist (set it with --cfg-options data_root=PATH)')
    (tmp_path / 'det' / 'train').mkdir(parents=True)
    det = Config(dict(train_dataloader=dict(dataset=dict(
        type='CocoDataset', data_root=str(tmp_path / 'det'), ann_file='annotations/train.json',
        data_prefix=dict(img='train/')))))
    with pytest.raises(DataPathError, match=r"train_dataloader: '.*det/annotations/train.json' "
                                            r'does not exist \(dataset CocoDataset'):
        check_data_paths(det)


def test_undecodable_image_is_named_or_skipped_and_counted(tmp_path, cls_config, cls_data):
    bad = cls_data / 'train' / 'a' / '0.jpg'
    bad.write_bytes(b'not an image at all')
    work_dir = tmp_path / 'w'
    # 4 iterations of 2 cover the 8 images: the bad one comes up
    message = run_tool(train_tool, cls_config, '--work-dir', str(work_dir),
                       options=['train_cfg.max_iters=4'])
    assert message == (f"error: cannot decode image '{bad}'; fix or delete it, or pass "
                       '--skip-bad-images to train without it')
    assert run_tool(train_tool, cls_config, '--work-dir', str(work_dir), '--skip-bad-images',
                    options=['train_cfg.max_iters=4']) is None
    log = open(sorted(glob.glob(f'{work_dir}/*/*.log'))[-1]).read()
    assert f"skipped undecodable image '{bad}' (1 skipped so far in this process)" in log


def test_grayscale_and_rgba_images_load_as_three_channels(cls_data):
    from mmvminet.datasets import CheckedLoadImageFromFile
    load = CheckedLoadImageFromFile()
    for name in ('a/gray.jpg', 'b/rgba.png'):
        img = load(dict(img_path=str(cls_data / 'train' / name)))['img']
        assert img.shape == (40, 40, 3) and img.dtype == np.uint8, name
    # and a run through the tool trains on them (the dataset holds both)


def write_coco(path, with_annotations: bool):
    images = [dict(id=i, file_name=f'{i}.jpg', height=64, width=64) for i in (1, 2)]
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[8, 8, 20, 20], area=400, iscrowd=0,
                 segmentation=[[8, 8, 28, 8, 28, 28, 8, 28]])] if with_annotations else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(images=images, annotations=anns,
                                    categories=[dict(id=1, name='square')])))


DET_CONFIG = '''
_base_ = [{base!r}]
default_scope = 'mmdet'
model = dict(backbone=dict(arch=dict(_delete_=True, base_dim=8, ratio=2, depths=[1, 1, 1, 1]),
                           init_cfg=None),
             neck=dict(in_channels=64),
             roi_head=dict(bbox_head=dict(num_classes=1), mask_head=dict(num_classes=1)))
train_dataloader = dict(
    batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CocoDataset', data_root={data_root!r}, ann_file='empty.json',
                 metainfo=dict(classes=('square', )), data_prefix=dict(img='train/'),
                 filter_cfg=dict(filter_empty_gt={filter_empty}),
                 pipeline=[dict(type='LoadImageFromFile'), dict(type='PackDetInputs')]))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
'''


@pytest.mark.parametrize('filter_empty', [True, False])
def test_coco_file_without_annotations(tmp_path, filter_empty):
    data_root = tmp_path / 'det'
    (data_root / 'train').mkdir(parents=True)
    write_coco(data_root / 'empty.json', with_annotations=False)
    config = tmp_path / 'det.py'
    config.write_text(DET_CONFIG.format(
        base=osp.join(ROOT, 'configs/_base_/models/mask_rcnn_vminet_sfp.py'),
        data_root=str(data_root), filter_empty=filter_empty))
    message = run_tool(train_tool, str(config), '--work-dir', str(tmp_path / 'w'))
    ann = f"CocoDataset (ann_file '{data_root}/empty.json')"
    if filter_empty:  # every image dropped: mmengine would fail to serialize an empty list
        assert message.startswith(f'error: {ann} has no samples after filter_cfg=')
    else:
        assert message == f'error: train_dataloader: {ann} has 2 images but no annotated ' \
                          'instance in any'


@pytest.fixture
def other_variant_checkpoint(tmp_path):
    """A checkpoint of the tiny classifier with other widths (base_dim 16)."""
    from mmengine.config import Config

    from mmvminet.registry import build_model
    cfg = Config.fromfile(write_cls_config(tmp_path / 'other.py', tmp_path))
    cfg.model.backbone.arch.base_dim = 16
    cfg.model.head.in_channels = 128
    path = tmp_path / 'other.pth'
    torch.save({'state_dict': build_model(cfg.model, 'mmpretrain').state_dict(), 'meta': {}},
               path)
    return str(path)


def test_checkpoint_of_another_variant(tmp_path, cls_config, other_variant_checkpoint):
    first = r"first mismatching key 'backbone\.\S+' has shape \(16, .*\) in the checkpoint, " \
            r"\(8, .*\) in the model"
    message = run_tool(test_tool, cls_config, other_variant_checkpoint,
                       '--work-dir', str(tmp_path / 'w'))
    assert message.startswith(f"error: '{other_variant_checkpoint}' does not fit this model")
    assert re.search(first, message)
    message = run_tool(train_tool, cls_config, '--work-dir', str(tmp_path / 'w'),
                       options=[f'load_from={other_variant_checkpoint}'])
    assert 'first mismatching key' in message
    message = run_tool(train_tool, cls_config, '--work-dir', str(tmp_path / 'w'),
                       '--resume', other_variant_checkpoint)
    assert 'first mismatching key' in message


@pytest.mark.parametrize('option,expected', [
    ('model.backbone.arch=zz', "error: unknown VMINet arch 'zz'; valid: "),
    ('model.backbone.mask_kind=zz', "error: unknown mask_kind 'zz'; valid: "),
    ('train_dataloader.dataset.type=NoSuchDataset',
     "error: dataset type 'NoSuchDataset' is not registered in scope 'mmpretrain'; check its "
     'spelling, or list the module that registers it in custom_imports'),
])
def test_bad_config_values(tmp_path, cls_config, option, expected):
    message = run_tool(train_tool, cls_config, '--work-dir', str(tmp_path / 'w'),
                       options=[option])
    assert message.startswith(expected), message


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_inputs_smaller_than_the_stride(tmp_path, cls_data, tool):
    config = write_cls_config(tmp_path / 'small.py', cls_data, crop=16)
    argv = [config] if tool == 'train' else [config, write_checkpoint(tmp_path, config)]
    message = run_tool(train_tool if tool == 'train' else test_tool, *argv,
                       '--work-dir', str(tmp_path / 'w'))
    assert message.startswith('error: VMINet needs inputs of at least 32x32'), message


def write_checkpoint(tmp_path, config):
    from mmengine.config import Config

    from mmvminet.registry import build_model
    path = tmp_path / 'model.pth'
    model = build_model(Config.fromfile(config).model, 'mmpretrain')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


@HOOKS.register_module(force=True)
class InjectNaNHook(Hook):
    """Test only: turns the head's weights into NaN before iteration ``at`` (1-based)."""

    def __init__(self, at: int):
        self.at = at

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            with torch.no_grad():
                runner.model.head.fc.weight.fill_(math.nan)


def test_nan_loss_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                            cls_data):
    config = write_cls_config(tmp_path / 'nan.py', cls_data, iters=5, interval=1,
                              custom_hooks=[dict(type='InjectNaNHook', at=3)],
                              imports=('mmvminet', 'test_reliability'))
    work_dir = tmp_path / 'w'
    message = run_tool(train_tool, config, '--work-dir', str(work_dir))
    assert message == ('error: loss is nan at iteration 3; training stopped without saving this '
                       f'state, the last good checkpoint is {work_dir}/iter_2.pth (lower the '
                       'learning rate, or clip gradients, before resuming)')
    assert sorted(osp.basename(p) for p in glob.glob(f'{work_dir}/iter_*.pth')) == [
        'iter_1.pth', 'iter_2.pth']
    assert open(work_dir / 'last_checkpoint').read() == f'{work_dir}/iter_2.pth'


def test_non_finite_weights_are_never_saved():
    from mmvminet.hooks import StopOnNonFiniteLossHook
    hub = MessageHub.get_instance(f'nan-{uuid.uuid4().hex}')
    runner = SimpleNamespace(iter=4, message_hub=hub)
    checkpoint = dict(state_dict={'w': torch.tensor([1.0, math.inf]), 'n': torch.tensor([3])})
    with pytest.raises(NonFiniteLossError, match=r"weight 'w' is not finite at iteration 5; .*"
                                                 'no checkpoint had been saved yet'):
        StopOnNonFiniteLossHook().before_save_checkpoint(runner, checkpoint)


@HOOKS.register_module(force=True)
class InfGradientHook(Hook):
    """Test only: an inf gradient for the head at iteration ``at``; records whether each
    iteration changed the head's weights."""
    instances = []

    def __init__(self, at: int):
        self.at, self.changed, self._handle = at, [], None
        self.instances.append(self)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        weight = runner.model.head.fc.weight
        self._before = weight.detach().clone()
        if runner.iter + 1 == self.at:
            self._handle = weight.register_hook(lambda g: torch.full_like(g, math.inf))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.changed.append(not torch.equal(self._before, runner.model.head.fc.weight))
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def test_amp_overflow_steps_are_skipped_and_counted(tmp_path, cls_data, monkeypatch):
    """mmengine's AmpOptimWrapper refuses CPUs and builds a CUDA GradScaler; here it gets
    torch's CPU GradScaler (same skip-and-rescale logic) so the count is tested on CPU."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
    monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp, 'GradScaler', functools.partial(torch.amp.GradScaler, 'cpu'))
    config = write_cls_config(tmp_path / 'amp.py', cls_data, iters=3, interval=3,
                              custom_hooks=[dict(type='InfGradientHook', at=2)],
                              imports=('mmvminet', 'test_reliability'))
    work_dir = tmp_path / 'w'
    assert run_tool(train_tool, config, '--work-dir', str(work_dir), options=[
        'optim_wrapper.type=AmpOptimWrapper', 'optim_wrapper.loss_scale=dynamic']) is None
    assert InfGradientHook.instances[-1].changed == [True, False, True]  # overflow: skipped
    log = open(sorted(glob.glob(f'{work_dir}/*/*.log'))[-1]).read()
    counts = [line.split('amp_overflow_steps: ')[1].split()[0] for line in log.splitlines()
              if 'Epoch(train)' in line]
    assert counts == ['0', '1', '1']


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message of a CPU machine')
def test_amp_without_cuda_is_one_line(tmp_path, cls_config):
    message = run_tool(train_tool, cls_config, '--amp', '--work-dir', str(tmp_path / 'w'))
    assert message == ('error: --amp trains in fp16 with loss scaling on a CUDA device; this '
                       'machine has none')
