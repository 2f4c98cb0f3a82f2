"""model-index.yml / metafile.yml: loadable by modelindex, one entry per config, measured
parameter counts, paper results marked as such."""
import glob
import os

import pytest
import yaml
from modelindex.load_model_index import load

from mmvminet.registry import build_model
from mmvminet.runner_utils import config_scope, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# built on the CPU to check Parameters: the classifiers and the small quickstart models (the
# ImageNet-size detectors and segmentors take longer to build; their counts come from the same
# tools/analysis/get_flops.py runs)
BUILT = ['configs/vminet_ti_in1k.py', 'configs/vminet_xs_in1k.py', 'configs/vminet_s_in1k.py',
         'configs/quickstart/vminet_ti_shapes_cls.py',
         'configs/quickstart/mask_rcnn_vminet_ti_shapes.py',
         'configs/quickstart/upernet_vminet_ti_shapes.py']


@pytest.fixture(scope='module')
def index():
    return load(os.path.join(ROOT, 'model-index.yml'))


@pytest.fixture(scope='module')
def entries():
    """Config path -> the raw metafile entry (plain dicts, extra fields included)."""
    with open(os.path.join(ROOT, 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    return {m['Config']: m for m in models}


def test_modelindex_loads_without_errors(index):
    assert index.check(silent=True) == []
    assert [c.name for c in index.collections] == ['VMINet']
    assert all(m.in_collection == 'VMINet' and m.weights is None for m in index.models)
    names = [m.name for m in index.models]
    assert len(names) == len(set(names))


def test_one_entry_per_config(index):
    configs = sorted(os.path.relpath(p, ROOT) for p in
                     glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                     if not {'_base_', 'ablations'} & set(p.split(os.sep)))
    listed = sorted(m.config for m in index.models)
    assert listed == configs  # also catches an entry listed twice
    assert all(os.path.isfile(os.path.join(ROOT, c)) for c in listed)


def test_paper_results_are_marked(entries):
    for config, entry in entries.items():
        assert entry['Metadata']['Parameters'] > 0 and entry['Metadata']['FLOPs'] > 0, config
        if entry['Results']:
            assert entry['Results Source'].startswith('paper, Table'), config
            assert 'not reproduced here' in entry['Results Source']
        else:  # the quickstart: no figure until tools/quickstart.sh produces one
            assert 'quickstart' in config and 'Results Source' not in entry


def test_paper_numbers(entries):
    """Spot checks against the paper (Tables 2, 5, 6) so that a shuffled entry shows."""
    def metric(config, i=0):
        return entries[config]['Results'][i]['Metrics']
    assert metric('configs/vminet_ti_in1k.py') == {'Top 1 Accuracy': 70.7}
    assert metric('configs/vminet_b_in1k.py') == {'Top 1 Accuracy': 82.4}
    assert metric('configs/mask_rcnn_vminet_s_1x.py', 0) == {'box AP': 43.2}
    assert metric('configs/mask_rcnn_vminet_s_1x.py', 1) == {'mask AP': 39.3}
    assert metric('configs/upernet_vminet_xs_160k_ade20k.py') == {'mIoU': 42.7}


@pytest.mark.parametrize('config', BUILT)
def test_parameters_match_the_built_model(entries, config):
    cfg = load_config(os.path.join(ROOT, config))
    model = build_model(cfg.model, config_scope(cfg))
    assert entries[config]['Metadata']['Parameters'] == sum(p.numel() for p in model.parameters())
