"""tools/analysis/vmisa_traffic.py: the per-block HBM byte counts of docs/benchmarks.md."""
import pytest

from tool_scripts import load_tool

traffic = load_tool('analysis/vmisa_traffic.py')


def test_stage_shapes_and_floor_bytes():
    rows = traffic.stage_traffic('xs', batch=2, size=(224, 200), dtype='bf16', bandwidth_tbs=2.0)
    assert [r['map'] for r in rows] == [[56, 50], [28, 25], [14, 13], [7, 7]]
    assert [r['blocks'] for r in rows] == [2, 2, 18, 2]
    for r, channels in zip(rows, (48, 96, 192, 384)):
        tokens = 2 * r['map'][0] * r['map'][1]
        assert r['hidden'] == 2 * channels
        assert r['floor_bytes'] == 3 * tokens * channels * 2  # read x twice, write once
        assert r['eager_bytes'] == tokens * (7 * channels + 18 * 2 * channels) * 2
        assert r['floor_us'] == pytest.approx(r['floor_bytes'] / 2e12 * 1e6)


def test_cli_json_and_errors(capsys):
    traffic.main(['--arch', 'ti', '--batch', '1', '--size', '64', '--dtype', 'fp32', '--json'])
    assert '"all_blocks_floor_us"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        traffic.main(['--arch', 'xl'])
    assert "unknown arch 'xl'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        traffic.main(['--dtype', 'int8'])
    assert "unknown dtype 'int8'" in capsys.readouterr().err
