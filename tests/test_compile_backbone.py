"""CompileBackboneHook and tools/train.py --compile-backbone: the backbone is compiled for
training steps only, and the run's checkpoint is the same as an eager run's."""
import glob
import types

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from test_reliability import make_cls_data, run_tool, train_tool, write_cls_config

from mmvminet.errors import ReportableError
from mmvminet.hooks import CompileBackboneHook
from mmvminet.models import SimpleFeaturePyramid, VMINet


@HOOKS.register_module(force=True)
class InterruptAfterIterHook(Hook):
    """Test only: stop training with an exception once iteration ``stop_at`` (1-based) is done
    and its checkpoint saved (lowest priority: after CheckpointHook); None: never."""
    priority = 'LOWEST'
    stop_at = None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == InterruptAfterIterHook.stop_at:
            raise KeyboardInterrupt


class Detector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = VMINet(arch=dict(base_dim=8, ratio=2, depths=[1, 1, 1, 1]))


class DetectorWithNeck(Detector):
    def __init__(self):
        super().__init__()
        self.neck = SimpleFeaturePyramid(in_channels=64, out_channels=8, num_outs=4)

    def extract_feat(self, x):
        return self.neck(self.backbone(x))


@pytest.mark.parametrize('hook_args, compiled_method, mode', [
    (dict(), VMINet.forward, 'reduce-overhead'),
    (dict(mode='default', with_neck=True), DetectorWithNeck.extract_feat, 'default')])
def test_only_training_calls_take_the_compiled_path(monkeypatch, hook_args, compiled_method,
                                                     mode):
    """The hook compiles the backbone's bound forward (with_neck: the model's extract_feat);
    only calls in training mode with grad go through it."""
    compiled_calls = []

    def fake_compile(fn, **kwargs):
        assert kwargs == dict(dynamic=False, mode=mode)
        assert fn.__func__ is compiled_method  # the bound method, not the module

        def compiled(*args, **kw):
            compiled_calls.append(args[0].shape)
            return fn(*args, **kw)
        return compiled

    monkeypatch.setattr(torch, 'compile', fake_compile)
    model = DetectorWithNeck()
    features = (lambda x: model.extract_feat(x)) if hook_args else (lambda x: model.backbone(x))
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    expected = features(x)
    CompileBackboneHook(**hook_args).before_train(types.SimpleNamespace(model=model))
    if hook_args:
        assert 'forward' not in vars(model.backbone)  # the backbone alone stays eager
    outputs = features(x)  # training with grad: compiled
    assert len(outputs) == len(expected)
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref)
    with torch.no_grad():
        features(x)
    model.eval()
    features(x)
    assert compiled_calls == [x.shape]
    assert list(model.state_dict()) == keys


def test_bad_mode_and_model_without_backbone():
    with pytest.raises(ValueError, match="mode 'fast' is not one of"):
        CompileBackboneHook(mode='fast')
    with pytest.raises(ReportableError, match='Linear has no `backbone` module'):
        CompileBackboneHook().before_train(types.SimpleNamespace(model=torch.nn.Linear(2, 2)))
    with pytest.raises(ReportableError, match='with_neck=True needs a model with a `neck` and '
                       '`extract_feat`; Detector has not'):
        CompileBackboneHook(with_neck=True).before_train(types.SimpleNamespace(model=Detector()))


def test_train_and_resume_with_compiled_backbone(tmp_path, monkeypatch):
    """A real inductor compile on the CPU (mode 'default'): 4 iterations straight, and a run
    interrupted after 2 then resumed, end with the same weights; the checkpoint has an eager
    run's keys."""
    config = write_cls_config(tmp_path / 'tiny_cls.py', make_cls_data(tmp_path / 'data'),
                              iters=4, interval=2,
                              custom_hooks=[dict(type='InterruptAfterIterHook')],
                              imports=('mmvminet', 'test_compile_backbone'))
    compiled = ['--compile-backbone', 'default']
    for name, extra in (('eager', []), ('straight', compiled),
                        ('with_neck', compiled + ['--compile-with-neck'])):
        assert run_tool(train_tool, config, '--work-dir', str(tmp_path / name), *extra) is None
    monkeypatch.setattr(InterruptAfterIterHook, 'stop_at', 2)
    with pytest.raises(KeyboardInterrupt):
        run_tool(train_tool, config, '--work-dir', str(tmp_path / 'resumed'), *compiled)
    monkeypatch.setattr(InterruptAfterIterHook, 'stop_at', None)
    assert run_tool(train_tool, config, '--work-dir', str(tmp_path / 'resumed'), *compiled,
                    '--resume') is None
    log = open(sorted(glob.glob(f'{tmp_path}/straight/*/*.log'))[-1]).read()
    assert "VMINet compiled for training (torch.compile mode 'default'" in log
    log = open(sorted(glob.glob(f'{tmp_path}/with_neck/*/*.log'))[-1]).read()
    assert ("VMINet and GlobalAveragePooling (extract_feat) compiled for training "
            "(torch.compile mode 'default'") in log
    log = open(sorted(glob.glob(f'{tmp_path}/resumed/*/*.log'))[-1]).read()
    assert 'resumed epoch: 0, iter: 2' in log and 'VMINet compiled for training' in log
    eager, straight, resumed = (
        torch.load(f'{tmp_path}/{name}/iter_4.pth', weights_only=False)['state_dict']
        for name in ('eager', 'straight', 'resumed'))
    assert list(eager) == list(straight)
    with_neck = torch.load(f'{tmp_path}/with_neck/iter_4.pth', weights_only=False)['state_dict']
    assert list(with_neck) == list(eager)
    for key, value in with_neck.items():  # the same training, up to the compiled kernels' rounding
        torch.testing.assert_close(value, straight[key], rtol=1e-4, atol=1e-5, msg=key)
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    assert train_tool.parse_args([config, '--compile-backbone']).compile_backbone == \
        'reduce-overhead'
    with pytest.raises(SystemExit):
        train_tool.parse_args([config, '--compile-backbone', 'jit'])
    assert run_tool(train_tool, config, '--work-dir', str(tmp_path / 'neck'),
                    '--compile-with-neck') == \
        'error: --compile-with-neck goes with --compile-backbone [MODE]'
