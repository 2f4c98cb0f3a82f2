import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # official_reference helpers
import mmvminet  # noqa: E402,F401  (fixes + registration, as custom_imports would)


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA device (run on the GPU machine)')
    config.addinivalue_line('markers', 'slow: end-to-end runs of a minute or more')


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'gpu' in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def repo_root():
    return ROOT


@pytest.fixture(scope='session')
def coco_data(tmp_path_factory):
    """Three training and two validation COCO-layout shapes scenes (make_shapes_dataset)."""
    from tool_scripts import load_tool
    out = tmp_path_factory.mktemp('coco_scenes') / 'data'
    load_tool('data/make_shapes_dataset.py').generate(
        out, num_train_cls=0, num_val_cls=0, num_train_scenes=3, num_val_scenes=2,
        layout='coco', verbose=False)
    return out
