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
from mmvminet.models import VMINet


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


def test_only_training_calls_take_the_compiled_path(monkeypatch):
    compiled_calls = []

    def fake_compile(fn, **kwargs):
        assert kwargs == dict(dynamic=False, mode='reduce-overhead')

        def compiled(*args, **kw):
            compiled_calls.append(args[0].shape)
            return fn(*args, **kw)
        return compiled

    monkeypatch.setattr(torch, 'compile', fake_compile)
    model = Detector()
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    expected = model.backbone(x)
    CompileBackboneHook().before_train(types.SimpleNamespace(model=model))
    for out, ref in zip(model.backbone(x), expected):  # training with grad: compiled
        torch.testing.assert_close(out, ref)
    with torch.no_grad():
        model.backbone(x)
    model.eval()
    model.backbone(x)
    assert compiled_calls == [x.shape]
    assert list(model.state_dict()) == keys


def test_bad_mode_and_model_without_backbone():
    with pytest.raises(ValueError, match="mode 'fast' is not one of"):
        CompileBackboneHook(mode='fast')
    with pytest.raises(ReportableError, match='Linear has no `backbone` module'):
        CompileBackboneHook().before_train(types.SimpleNamespace(model=torch.nn.Linear(2, 2)))


def test_train_and_resume_with_compiled_backbone(tmp_path, monkeypatch):
    """A real inductor compile on the CPU (mode 'default'): 4 iterations straight, and a run
    interrupted after 2 then resumed, end with the same weights; the checkpoint has an eager
    run's keys."""
    config = write_cls_config(tmp_path / 'tiny_cls.py', make_cls_data(tmp_path / 'data'),
                              iters=4, interval=2,
                              custom_hooks=[dict(type='InterruptAfterIterHook')],
                              imports=('mmvminet', 'test_compile_backbone'))
    compiled = ['--compile-backbone', 'default']
    for name, extra in (('eager', []), ('straight', compiled)):
        assert run_tool(train_tool, config, '--work-dir', str(tmp_path / name), *extra) is None
    monkeypatch.setattr(InterruptAfterIterHook, 'stop_at', 2)
    with pytest.raises(KeyboardInterrupt):
        run_tool(train_tool, config, '--work-dir', str(tmp_path / 'resumed'), *compiled)
    monkeypatch.setattr(InterruptAfterIterHook, 'stop_at', None)
    assert run_tool(train_tool, config, '--work-dir', str(tmp_path / 'resumed'), *compiled,
                    '--resume') is None
    log = open(sorted(glob.glob(f'{tmp_path}/straight/*/*.log'))[-1]).read()
    assert "VMINet compiled for training (torch.compile mode 'default'" in log
    log = open(sorted(glob.glob(f'{tmp_path}/resumed/*/*.log'))[-1]).read()
    assert 'resumed epoch: 0, iter: 2' in log and 'VMINet compiled for training' in log
    eager, straight, resumed = (
        torch.load(f'{tmp_path}/{name}/iter_4.pth', weights_only=False)['state_dict']
        for name in ('eager', 'straight', 'resumed'))
    assert list(eager) == list(straight)
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key
    assert train_tool.parse_args([config, '--compile-backbone']).compile_backbone == \
        'reduce-overhead'
    with pytest.raises(SystemExit):
        train_tool.parse_args([config, '--compile-backbone', 'jit'])
