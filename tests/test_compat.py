"""The stack fixes of mmvminet.compat, each against the failure it prevents."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch


def test_mmengine_checkpoint_types_load_with_weights_only(tmp_path):
    """A checkpoint with mmengine's message hub and numpy meta loads under weights_only=True."""
    import numpy as np
    from mmengine.logging import MessageHub
    hub = MessageHub('compat-test')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('iter', 10)
    ckpt = dict(meta=dict(seed=np.int64(3), hist=np.arange(4, dtype=np.float32),
                          dtype=np.dtype('float64')), message_hub=hub.state_dict(),
                state_dict={'w': torch.ones(2)})
    path = tmp_path / 'ckpt.pth'
    torch.save(ckpt, path)
    # in a fresh process, as tools/test.py or a resumed run would load it
    out = subprocess.run(
        [sys.executable, '-c', 'import mmvminet, torch\n'
         f'c = torch.load({str(path)!r}, weights_only=True)\n'
         "print(c['message_hub']['log_scalars']['train/loss'].current(), c['meta']['seed'])"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ['1.5', '3']


def test_unknown_types_stay_refused(tmp_path):
    """Only mmengine's types are allowed, not arbitrary pickles."""
    from fractions import Fraction
    path = tmp_path / 'bad.pth'
    torch.save({'x': Fraction(1, 3)}, path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path, weights_only=True)


# Stand-in for transformers 5.x, as much of it as mmengine, mmdet and mmpretrain import. Under
# 5.x, helpers that mmpretrain's BLIP code imports from transformers.modeling_utils are gone;
# its bare `except:` then sets PreTrainedModel = None and `class ...(PreTrainedModel)` raises
# "NoneType takes no arguments". The stand-in has classes for any capitalised top-level name
# and a modeling_utils without those helpers.
FAKE_TRANSFORMERS = {
    '__init__.py': textwrap.dedent('''
        __version__ = '5.0.0'


        def __getattr__(name):
            if not name[:1].isupper():
                raise AttributeError(name)
            from .models.auto.auto_factory import _BaseAutoModelClass
            base = (_BaseAutoModelClass, ) if name.startswith('AutoModel') else ()
            globals()[name] = type(name, base, dict(from_pretrained=classmethod(lambda *a: None),
                                                    from_config=classmethod(lambda *a: None)))
            return globals()[name]
    '''),
    'modeling_utils.py': 'class PreTrainedModel:\n    pass\n',
    'models/__init__.py': '',
    'models/auto/__init__.py': '',
    'models/auto/auto_factory.py': 'class _BaseAutoModelClass:\n    pass\n',
}


@pytest.fixture
def fake_transformers5(tmp_path):
    for name, text in FAKE_TRANSFORMERS.items():
        path = tmp_path / 'transformers' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    dist = tmp_path / 'transformers-5.0.0.dist-info'
    dist.mkdir()
    (dist / 'METADATA').write_text('Metadata-Version: 2.1\nName: transformers\nVersion: 5.0.0\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path)] + sys.path))
    return env


def run(code, env):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, timeout=600)


def test_stand_in_reproduces_the_crash(fake_transformers5):
    out = run('import mmpretrain.models', fake_transformers5)
    assert out.returncode != 0, out.stdout
    assert 'mmpretrain/models/multimodal' in out.stderr, out.stderr[-2000:]
    assert 'NoneType takes no arguments' in out.stderr, out.stderr[-2000:]


def test_mmpretrain_models_import_under_transformers5_after_mmvminet(fake_transformers5):
    out = run('import mmvminet, mmpretrain.models\n'
              'from mmpretrain.registry import MODELS\n'
              'print(MODELS.get("ImageClassifier").__name__, MODELS.get("VMINet").__name__)',
              fake_transformers5)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ['ImageClassifier', 'VMINet']


class Sneaky:
    """Pickles as getattr(np.ndarray, 'tofile'): a getattr that is not HistoryBuffer's."""

    def __reduce__(self):
        import numpy as np
        return (getattr, (np.ndarray, 'tofile'))


def test_getattr_stand_in_is_narrow(tmp_path):
    """The checkpoint's getattr may only fetch HistoryBuffer's statistics methods."""
    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(Exception, match='Unsupported global|refused getattr|weights_only'):
        torch.load(path, weights_only=True)
