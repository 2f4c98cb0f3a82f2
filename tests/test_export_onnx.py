"""tools/deployment/export_onnx.py: onnxruntime matches PyTorch at the traced size and, for
dynamic graphs, at other sizes (square and not, not multiples of 32)."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mmvminet.models.vminet import VMINet, VMISA
from mmvminet.registry import build_model
from mmvminet.runner_utils import load_config
from tool_scripts import load_tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'configs', 'quickstart', 'vminet_ti_shapes_cls.py')
export_onnx = load_tool('deployment/export_onnx.py')

TOL = 1e-4  # float32 rounding of ~100 ops; a frozen mask or alpha grid errs by >1e-2 here
OTHER_SHAPES = [(128, 128), (100, 61)]


def amplify_context(model: torch.nn.Module, seed: int = 0):
    """alpha ~ N(0, 1) instead of the 0.02-std init: the context term then outweighs the local
    one (x1 to x100), so a graph with the mask or the alpha grid baked at the traced size would
    be far off at other sizes, instead of within rounding of the right answer."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, VMISA):
            m.alpha.data = torch.randn(m.alpha.shape, generator=gen)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The quickstart classifier, random init, alphas amplified, head scaled to O(1) logits."""
    torch.manual_seed(0)
    model = build_model(load_config(CONFIG).model, 'mmpretrain')
    model.init_weights()
    amplify_context(model)
    model.head.fc.weight.data *= 50
    path = str(tmp_path_factory.mktemp('ckpt') / 'ti_shapes_cls.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


def tolerance(reference: np.ndarray) -> float:
    return TOL * max(1.0, float(np.abs(reference).max()))


def run(args):
    return export_onnx.main([CONFIG] + args)


@pytest.mark.parametrize('backbone_only', [True, False])
def test_static_export_matches_pytorch(checkpoint, tmp_path, backbone_only):
    out = str(tmp_path / 'm.onnx')
    extra = ['--backbone-only'] if backbone_only else []
    result = run([checkpoint, '--shape', '64', '64', '--verify', '--out', out] + extra)
    assert list(result['diffs']) == ['1x3x64x64']
    assert result['diffs']['1x3x64x64'] < TOL
    graph = onnx.load(out)
    assert [o.name for o in graph.graph.output] == (['stage3'] if backbone_only else ['logits'])
    meta = {p.key: p.value for p in graph.metadata_props}
    assert '123.675' in meta['mean'] and meta['to_rgb'] == 'true'
    # static: the input shape is fixed
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 64, 64]


@pytest.mark.parametrize('backbone_only', [True, False])
def test_dynamic_export_matches_pytorch_at_other_shapes(checkpoint, tmp_path, backbone_only):
    out = str(tmp_path / 'm.onnx')
    extra = ['--backbone-only'] if backbone_only else []
    result = run([checkpoint, '--shape', '64', '64', '--dynamic', '--verify', '--out', out]
                 + extra)
    assert set(result['diffs']) == {'1x3x64x64', '2x3x96x128'}
    assert max(result['diffs'].values()) < TOL

    model = export_onnx.load_model(load_config(CONFIG), checkpoint)
    module = export_onnx.Exportable(model, backbone_only, softmax=False).eval()
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    for h, w in OTHER_SHAPES:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(h))
        with torch.no_grad():
            refs = [r.numpy() for r in module(x)]
        outs = session.run(None, {'input': x.numpy()})
        for o, r in zip(outs, refs):
            assert o.shape == r.shape
            assert np.abs(o - r).max() < tolerance(r), (h, w)


def test_fused_softmax_export(checkpoint, tmp_path):
    out = str(tmp_path / 'm.onnx')
    result = run([checkpoint, '--shape', '64', '96', '--fuse', '--softmax', '--verify',
                  '--out', out])
    assert result['diffs']['1x3x64x96'] < TOL  # fused graph vs the unfused PyTorch model
    probs, = ort.InferenceSession(out, providers=['CPUExecutionProvider']).run(
        None, {'input': np.random.default_rng(0).standard_normal((1, 3, 64, 96), np.float32)})
    assert probs.shape == (1, 5) and abs(probs.sum() - 1) < 1e-5


def test_dynamic_banded_mask_follows_the_input_size(tmp_path):
    """The banded mask's bandwidth is min(L, D): min() of a traced size must stay a graph op,
    else the graph keeps the branch of the traced size (L < D at 64x64, L > D at 320x320)."""
    torch.manual_seed(0)
    model = VMINet(dict(base_dim=8, ratio=1, depths=[1, 1, 1, 1]), out_indices=(0, 1, 2, 3),
                   mask_kind='banded').eval()
    amplify_context(model)
    path = str(tmp_path / 'banded.onnx')
    with torch.no_grad():
        export_onnx.export(model, torch.randn(1, 3, 64, 64), path,
                           [f'stage{i}' for i in range(4)], dynamic=True, opset=17)
    inputs = [torch.randn(1, 3, h, w) for h, w in [(96, 128), (320, 320)]]
    with torch.no_grad():
        refs = [model(x) for x in inputs]
    assert max(export_onnx.max_abs_diffs(path, inputs, refs)) < TOL


def test_backbone_of_a_detector_config(checkpoint, tmp_path):
    with pytest.raises(SystemExit, match='not a classifier config; use --backbone-only'):
        export_onnx.main([os.path.join(ROOT, 'configs', 'mask_rcnn_vminet_xs_1x.py'),
                          checkpoint, '--shape', '64', '64'])


def test_bad_checkpoint_paths(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: checkpoint not found: '.*missing.pth'"):
        run([str(tmp_path / 'missing.pth'), '--shape', '64', '64'])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(SystemExit, match='^error: .* is not a readable PyTorch checkpoint'):
        run([str(garbage), '--shape', '64', '64'])
    with pytest.raises(SystemExit, match='^error: config not found'):
        export_onnx.main(['configs/nope.py', str(garbage), '--shape', '64', '64'])
