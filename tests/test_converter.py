"""tools/model_converters/vminet2mmvminet.py: official layout in, mmpretrain classifier out."""
import argparse
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmvminet.models import CheckpointMismatchError
from mmvminet.registry import build_model
from official_reference import OfficialVMINet, randomize
from tool_scripts import load_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
converter = load_tool('model_converters/vminet2mmvminet.py')


def write_official(path, model, key='state_dict'):
    torch.save({key: model.state_dict(), 'epoch': 299, 'arch': 'VMINet',
                'args': argparse.Namespace(lr=5e-4, batch_size=128)}, path)


def build_classifier(arch):
    cfg = Config.fromfile(osp.join(ROOT, f'configs/vminet_{arch}_in1k.py'))
    return build_model(cfg.model, 'mmpretrain')


@pytest.mark.parametrize('key', ['state_dict', 'state_dict_ema'])
def test_round_trip_reproduces_logits(tmp_path, key):
    reference = randomize(OfficialVMINet(base_dim=24, ratio=2)).eval()
    src, dst = tmp_path / 'VMINet2.0-Ti-checkpoint.pth.tar', tmp_path / 'ti.pth'
    write_official(src, reference, key)
    assert converter.convert(str(src), str(dst), use_ema=key == 'state_dict_ema') == 'ti'

    classifier = build_classifier('ti').eval()
    state_dict = torch.load(dst, map_location='cpu')['state_dict']
    result = classifier.load_state_dict(state_dict, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(x)
        logits = classifier(x, mode='tensor')
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


def test_bare_state_dict_and_cli(tmp_path, capsys):
    reference = randomize(OfficialVMINet(base_dim=24, ratio=2))
    src = tmp_path / 'bare.pth'
    torch.save(reference.state_dict(), src)
    converter.main([str(src), str(tmp_path / 'out.pth'), '--arch', 'ti'])
    assert 'VMINet-ti' in capsys.readouterr().out
    assert osp.isfile(tmp_path / 'out.pth') and not osp.exists(tmp_path / 'out.pth.tmp')


def test_wrong_variant_names_key_and_shapes(tmp_path):
    src = tmp_path / 'ti.pth.tar'
    write_official(src, OfficialVMINet(base_dim=24, ratio=2))
    with pytest.raises(CheckpointMismatchError,
                       match=r"first mismatching key 'stages.0.downsample.conv.weight' has "
                       r"shape \(24, 32, 3, 3\) in the checkpoint, \(48, 32, 3, 3\) in the model"):
        converter.convert(str(src), str(tmp_path / 'x.pth'), arch='xs')
    with pytest.raises(SystemExit, match='first mismatching key'):
        converter.main([str(src), str(tmp_path / 'x.pth'), '--arch', 's'])


def test_not_a_vminet_checkpoint(tmp_path):
    src = tmp_path / 'resnet.pth'
    torch.save({'state_dict': torch.nn.Conv2d(3, 8, 3).state_dict()}, src)
    with pytest.raises(CheckpointMismatchError, match='not an official VMINet checkpoint'):
        converter.convert(str(src), str(tmp_path / 'x.pth'))
    with pytest.raises(SystemExit, match="checkpoint not found: '.*missing.pth'"):
        converter.main([str(tmp_path / 'missing.pth'), str(tmp_path / 'x.pth')])
