"""mmvminet.optim: merged parameter groups give the same updates as one group per parameter."""
import copy

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch import nn

import mmvminet  # noqa: F401  (registers the constructor)
from mmvminet.optim import merge_param_groups

PARAMWISE = dict(norm_decay_mult=0.0, bias_decay_mult=0.0,
                 custom_keys={'head': dict(lr_mult=0.1), '.alpha': dict(decay_mult=0.0)})


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.norm = nn.BatchNorm2d(8)
        self.alpha = nn.Parameter(torch.ones(8))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.norm(self.conv(x)) * self.alpha[:, None, None]
        return self.head(x.mean((2, 3)))


def optim_wrapper(model, constructor=None, scope='mmengine'):
    cfg = dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
               paramwise_cfg=PARAMWISE)
    if constructor:
        cfg['constructor'] = constructor
    with DefaultScope.overwrite_default_scope(scope):
        return build_optim_wrapper(model, cfg)


def test_merge_param_groups_keeps_order_and_options():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [dict(params=[a], lr=0.1, weight_decay=0.05),
              dict(params=[b], lr=0.1, weight_decay=0.0),
              dict(params=[c], lr=0.1, weight_decay=0.05),
              dict(params=[d], lr=0.01, weight_decay=0.0)]
    merged = merge_param_groups(groups)
    assert [[id(p) for p in g['params']] for g in merged] == [[id(a), id(c)], [id(b)], [id(d)]]
    assert [(g['lr'], g['weight_decay']) for g in merged] == [(0.1, 0.05), (0.1, 0.0), (0.01, 0.0)]
    assert merge_param_groups([]) == []


def test_merged_groups_give_the_same_updates():
    torch.manual_seed(0)
    reference, merged = Net(), Net()
    merged.load_state_dict(reference.state_dict())
    initial = reference.conv.weight.detach().clone()
    per_param = optim_wrapper(reference)
    few = optim_wrapper(merged, 'MergedGroupsOptimWrapperConstructor')
    assert len(per_param.optimizer.param_groups) == len(list(reference.parameters())) == 7
    # weight decay 0.05 (conv, head weights: the head's with lr x0.1), or none (norm, biases,
    # alpha): 4 distinct sets of options
    assert len(few.optimizer.param_groups) == 4
    for step in range(3):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(step))
        for model, wrapper in ((reference, per_param), (merged, few)):
            wrapper.update_params(model(x).square().mean())
    for (name, p), q in zip(reference.named_parameters(), merged.parameters()):
        assert torch.equal(p, q), name
    assert not torch.equal(reference.conv.weight, initial)  # it did train


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_every_library_finds_the_constructor(scope):
    pytest.importorskip(scope)
    wrapper = optim_wrapper(Net(), 'MergedGroupsOptimWrapperConstructor', scope)
    assert len(wrapper.optimizer.param_groups) == 4


def test_state_of_the_other_constructor_is_refused():
    """The README's promise: an optimizer state loads only under the constructor that saved it
    (a clear error, not a silent mix-up of moments between parameters)."""
    model = Net()
    per_param = optim_wrapper(model)
    per_param.update_params(model(torch.randn(2, 3, 8, 8)).square().mean())
    few = optim_wrapper(model, 'MergedGroupsOptimWrapperConstructor')
    with pytest.raises(ValueError, match='parameter groups'):
        few.load_state_dict(per_param.state_dict())


def detection_optim_wrapper(model, fused: bool, device: str):
    """Our detection schedule's optimizer wrapper (fp16 AMP on CUDA, as it trains; plain on the
    CPU), with its fused AdamW or torch's default implementation."""
    from mmengine.config import Config
    cfg = Config.fromfile('configs/_base_/schedules/mask_rcnn_adamw_1x.py').optim_wrapper
    assert cfg.optimizer.fused  # what the detection configs train with
    cfg.optimizer.fused = fused
    if device == 'cpu':
        cfg = {k: v for k, v in cfg.items() if k not in ('type', 'dtype', 'loss_scale')}
    with DefaultScope.overwrite_default_scope('mmdet'):
        return build_optim_wrapper(model, cfg)


@pytest.mark.parametrize('device', ['cpu', pytest.param('cuda', marks=pytest.mark.gpu)])
def test_fused_adamw_gives_the_default_updates(device):
    """The detection schedule's fused AdamW updates every parameter as torch's default AdamW
    does, up to float rounding, in its merged groups (with and without weight decay); on CUDA
    under AmpOptimWrapper's dynamic loss scale, where a step whose gradients overflow is skipped
    by both alike."""
    torch.manual_seed(0)
    default, fused = Net().to(device), Net().to(device)
    fused.load_state_dict(default.state_dict())
    initial = {n: p.detach().clone() for n, p in default.named_parameters()}
    wrappers = {}
    for model, is_fused in ((default, False), (fused, True)):
        wrappers[is_fused] = detection_optim_wrapper(model, is_fused, device)
        assert wrappers[is_fused].optimizer.defaults['fused'] is is_fused
    for step in range(4):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(step)).to(device)
        if step == 2 and device == 'cuda':
            x[0, 0, 0, 0] = float('inf')  # non-finite gradients: the scaler skips this step
        for model, is_fused in ((default, False), (fused, True)):
            wrapper = wrappers[is_fused]
            with wrapper.optim_context(model):
                loss = model(x).square().mean()
            wrapper.update_params(loss)
    for (name, p), q in zip(default.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
        assert torch.isfinite(p).all() and not torch.equal(p, initial[name]), name
    if device == 'cuda':
        scales = [w.loss_scaler.get_scale() for w in wrappers.values()]
        assert scales[0] == scales[1] < 65536.0  # the overflow halved both scales


def test_a_foreach_adamw_state_resumes_under_fused():
    """Checkpoints written before the detection schedule named fused AdamW resume under it: the
    same moments and step counts, the next update as the default AdamW's (up to rounding)."""
    torch.manual_seed(0)
    before, after = Net(), Net()
    after.load_state_dict(before.state_dict())
    x = torch.randn(2, 3, 8, 8)
    old = detection_optim_wrapper(before, False, 'cpu')
    old.update_params(before(x).square().mean())
    resumed = detection_optim_wrapper(after, True, 'cpu')
    after.load_state_dict(before.state_dict())
    resumed.load_state_dict(copy.deepcopy(old.state_dict()))  # as from a checkpoint file
    for model, wrapper in ((before, old), (after, resumed)):
        wrapper.update_params(model(x).square().mean())
    for (name, p), q in zip(before.named_parameters(), after.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert all(float(s['step']) == 2 for s in resumed.optimizer.state.values())
