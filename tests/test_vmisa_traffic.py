"""tools/kernels/vmisa_traffic.py: the per-block HBM byte counts of docs/benchmarks.md."""
import json

import pytest

from tool_scripts import load_tool

traffic = load_tool('kernels/vmisa_traffic.py')


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
        assert r['tensor_flops'] == 10 * tokens * channels * r['hidden']
        assert r['vector_flops'] == 2 * 2 * 49 * tokens * channels


def test_roofline_is_memory_bound_only_on_narrow_stages():
    # H100-like rates: the two-pass block is memory-bound at C = 48 and compute-bound from
    # C = 192 on (tensor cores), as the docstring says
    rows = traffic.stage_traffic('xs', 256, (224, 224), 'bf16', 3.35, 989., 67.)
    assert rows[0]['roofline_us'] == rows[0]['compute_floor_us'] > rows[0]['floor_us']
    for r in rows[2:]:
        assert r['roofline_us'] == pytest.approx(r['tensor_flops'] / 989e6)
        assert r['roofline_us'] > r['floor_us']
    assert all(r['roofline_us'] == max(r['floor_us'], r['compute_floor_us']) for r in rows)


def test_cli_json_and_errors(capsys):
    traffic.main(['--arch', 'ti', '--batch', '1', '--size', '64', '--dtype', 'fp32', '--json'])
    assert '"all_blocks_floor_us"' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        traffic.main(['--arch', 'xl'])
    assert "unknown arch 'xl'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        traffic.main(['--dtype', 'int8'])
    assert "unknown dtype 'int8'" in capsys.readouterr().err


def test_measured_blocks_against_the_floors(tmp_path, capsys):
    rows = traffic.stage_traffic('ti', 2, (64, 64), 'bf16', 1.0)
    measured = [dict(stage=r['stage'], channels=r['channels'], map=r['map'], eager_us=9.0,
                     compile_us=4.0, triton_us=1.5 * (r['stage'] + 1), compile_triton_us=5.0)
                for r in rows]
    path = tmp_path / 'blocks.json'
    path.write_text(json.dumps(dict(copy_bandwidth_tbs=0.5, rows=measured)))
    out = traffic.main(['--arch', 'ti', '--batch', '2', '--size', '64', '--measured', str(path)])
    assert [r['best_mode'] for r in out] == ['triton', 'triton', 'compile', 'compile']
    assert out[0]['floor_us'] == pytest.approx(rows[0]['floor_us'] * 2)  # its 0.5 TB/s
    assert out[0]['best_over_roofline'] == pytest.approx(1.5 / out[0]['roofline_us'])
    assert 'best/roofline' in capsys.readouterr().out
    with pytest.raises(SystemExit):  # measured on another size
        traffic.main(['--arch', 'ti', '--batch', '2', '--size', '96', '--measured', str(path)])
    assert 'measured on another shape' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        traffic.main(['--measured', str(tmp_path / 'missing.json')])
    assert 'no such file' in capsys.readouterr().err
