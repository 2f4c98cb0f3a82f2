"""The installed stack is the one mmvminet needs; each failure says what is wrong."""
import importlib.metadata as md
import os.path as osp
import subprocess

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def pinned():
    pins = {}
    with open(osp.join(ROOT, 'requirements/constraints.txt')) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if '==' in line:
                name, version = line.split('==')
                pins[name.lower()] = version
    return pins


@pytest.mark.parametrize('name', ['torch', 'torchvision', 'setuptools', 'mmengine', 'mmcv',
                                  'mmdet', 'mmsegmentation', 'mmpretrain'])
def test_pinned_versions(name):
    want = pinned()[name]
    have = md.version(name).split('+')[0]
    assert have == want, f'{name} {have} is installed, the setup pins {want}: rerun ' \
                         f'bash tools/setup_env.sh'


def test_mmcv_ops_compiled():
    try:
        from mmcv.ops import RoIAlign, nms
    except ImportError as e:
        pytest.fail(f'mmcv was installed without its compiled ops ({e}); rebuild with '
                    f'MMCV_WITH_OPS=1 through tools/setup_env.sh')
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(64.).reshape(1, 1, 8, 8).requires_grad_()
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2)(feats, rois)
    out.sum().backward()
    assert out.shape == (1, 1, 2, 2) and feats.grad.abs().sum() > 0


def test_mmpretrain_models_import():
    try:
        import mmpretrain.models  # noqa: F401
    except Exception as e:  # torchvision missing or broken is the usual cause
        pytest.fail(f'import mmpretrain.models failed: {e!r} (needs a torchvision matching torch)')


def test_pkg_resources_available():
    import pkg_resources  # noqa: F401  (mmengine's mmdet::/mmseg:: config bases need it)


@pytest.mark.parametrize('base', ['mmdet::_base_/models/mask-rcnn_r50_fpn.py',
                                  'mmseg::_base_/models/upernet_r50.py',
                                  'mmpretrain::_base_/default_runtime.py'])
def test_library_config_bases_resolve(tmp_path, base):
    from mmengine.config import Config
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(f"_base_ = ['{base}']\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.get('model') is not None or cfg.get('default_scope') == 'mmpretrain'


def test_offline_wheels_asks_pip_for_the_pinned_stack(tmp_path):
    """tools/offline_wheels.sh: every package at its constraints.txt pin, mmseg's prettytable
    included, for the target's Python, without dependencies; the mmcv wheel copied beside."""
    script = osp.join(ROOT, 'tools', 'offline_wheels.sh')
    fake = tmp_path / 'bin'
    fake.mkdir()
    # a python3 that records what pip was asked for instead of downloading
    (fake / 'python3').write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/pip_args\n')
    (fake / 'python3').chmod(0o755)
    mmcv = tmp_path / 'mmcv-2.1.0-cp312-cp312-linux_x86_64.whl'
    mmcv.write_bytes(b'wheel')
    env = {'PATH': f'{fake}:/usr/bin:/bin', 'PY_VERSION': '3.12'}
    out = tmp_path / 'wheels'
    done = subprocess.run(['bash', script, str(out), str(mmcv)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / 'pip_args').read_text().split()
    pins = pinned()
    for name in ('mmengine', 'mmdet', 'mmsegmentation', 'prettytable', 'lazy-importer'):
        assert f'{name}=={pins[name]}' in [a.lower() for a in args], name
    assert args[:4] == ['-m', 'pip', 'download', '--quiet'] and '--no-deps' in args
    assert args[args.index('--python-version') + 1] == '3.12'
    assert (out / mmcv.name).read_bytes() == b'wheel'
    missing = subprocess.run(['bash', script, str(out), str(tmp_path / 'none.whl')], env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 1 and 'no mmcv wheel at' in missing.stderr
