"""tools/analysis/compile_shapes.py: shapes are checked, every mode gets a row per shape, and the
recompilation reasons torch.compile logs are collected."""
import json
import logging

import pytest
import torch
from tool_scripts import load_tool

compile_shapes = load_tool('analysis/compile_shapes.py')


def test_shapes_are_checked():
    assert compile_shapes.parse_shapes('800x1216,64X96') == [(800, 1216), (64, 96)]
    with pytest.raises(SystemExit, match='not HEIGHTxWIDTH'):
        compile_shapes.parse_shapes('800,1216')
    with pytest.raises(SystemExit, match='below'):
        compile_shapes.parse_shapes('800x16')


def test_recompile_reasons_keep_each_guard_failure():
    reasons = compile_shapes.RecompileReasons()
    logger = logging.getLogger(compile_shapes.RecompileReasons.LOGGER)
    logger.addHandler(reasons)
    try:
        logger.warning('Recompiling function forward in vminet.py:491\n'
                       '    triggered by the following guard failure(s):\n'
                       "    - 0/0: tensor 'x' size mismatch at index 3. expected 1216, actual 1088\n"
                       '    - 0/1: (192 + 192*((x.size()[3] - 1) // 32)) == 2880')
    finally:
        logger.removeHandler(reasons)
    assert reasons.reasons == ["0/0: tensor 'x' size mismatch at index 3. expected 1216, "
                               'actual 1088', '0/1: (192 + 192*((x.size()[3] - 1) // 32)) == 2880']


def test_rows_per_mode_and_shape(monkeypatch, tmp_path):
    compiled = []

    def fake_compile(fn, dynamic):  # compiling on a CPU takes minutes: the eager function
        compiled.append(dynamic)
        return fn
    monkeypatch.setattr(torch, 'compile', fake_compile)
    out = tmp_path / 'shapes.json'
    results = compile_shapes.main(['--arch', 'ti', '--modes', 'eager,static,dynamic',
                                   '--shapes', '64x64,64x96', '--batch', '1', '--steps', '1',
                                   '--device', 'cpu', '--out', str(out)])
    assert compiled == [False, True]
    assert [r['mode'] for r in results['rows']] == ['eager', 'static', 'dynamic']
    for row in results['rows']:
        assert [s['shape'] for s in row['shapes']] == ['64x64', '64x96']
        assert all(s['first_ms'] > 0 and s['steady_ms'] > 0 for s in row['shapes'])
        assert row['steady_total_ms'] == pytest.approx(sum(s['steady_ms'] for s in row['shapes']))
    assert json.loads(out.read_text())['rows'][2]['mode'] == 'dynamic'
    assert 'steady vs eager' in compile_shapes.report(results['rows'])
