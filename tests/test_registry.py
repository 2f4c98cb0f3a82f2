"""VMINet and the neck are visible to each library's registry, built from its own configs."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmvminet.models import SimpleFeaturePyramid, VMINet
from mmvminet.registry import build_model, installed_model_registries

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_all_three_libraries_are_installed_and_see_vminet():
    registries = installed_model_registries()
    assert set(registries) == {'mmpretrain', 'mmdet', 'mmseg'}, (
        'the install is incomplete: mmpretrain, mmdet and mmseg must all import')
    for scope, registry in registries.items():
        assert registry.get('VMINet') is VMINet, scope
        assert registry.get('SimpleFeaturePyramid') is SimpleFeaturePyramid, scope


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
@pytest.mark.parametrize('arch', ['ti', 'xs', 's', 'b'])
def test_build_each_variant_from_each_registry(scope, arch):
    registry = installed_model_registries()[scope]
    model = registry.build(dict(type='VMINet', arch=arch, out_indices=(0, 1, 2, 3)))
    assert isinstance(model, VMINet)
    assert model.out_strides == (4, 8, 16, 32)
    base = VMINet.arch_settings[arch]['base_dim']
    assert model.out_channels == (base, 2 * base, 4 * base, 8 * base)


def test_custom_imports_in_a_fresh_process(tmp_path):
    """What a user's config does: custom_imports=['mmvminet'] then build through the registry."""
    import subprocess
    import sys
    cfg = tmp_path / 'user_cfg.py'
    cfg.write_text("custom_imports = dict(imports=['mmvminet'], allow_failed_imports=False)\n"
                   "backbone = dict(type='VMINet', arch='ti', out_indices=(3, ))\n")
    code = ("from mmengine.config import Config\n"
            f"cfg = Config.fromfile({str(cfg)!r})\n"
            "from mmdet.registry import MODELS\n"
            "import torch\n"
            "m = MODELS.build(cfg.backbone)\n"
            "print(tuple(m(torch.zeros(1, 3, 64, 64))[0].shape))\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('(1, 192, 2, 2)')


@pytest.mark.parametrize('arch', ['ti', 'xs', 's', 'b'])
def test_classification_config_builds_and_classifies(arch):
    cfg = Config.fromfile(osp.join(ROOT, f'configs/vminet_{arch}_in1k.py'))
    assert cfg.default_scope == 'mmpretrain'
    model = build_model(cfg.model, 'mmpretrain').eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 224, 224), mode='tensor')
    assert logits.shape == (1, 1000)
