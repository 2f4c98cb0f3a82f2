"""tools/analysis/benchmark.py: the CPU smoke run, its JSON, and the fused inference model."""
import json

import pytest
import torch
from tool_scripts import load_tool

SMOKE_ARGS = ['--device', 'cpu', '--ours', 'ti', '--peers', 'none', '--batch', '2',
              '--train-batch', '2', '--img-size', '64', '--iters', '2', '--warmup', '1',
              '--repeats', '1', '--modes', 'eager']


@pytest.fixture(scope='module')
def benchmark():
    return load_tool('analysis/benchmark.py')


def test_cpu_smoke_run_writes_json(benchmark, tmp_path):
    out = tmp_path / 'bench.json'
    returned = benchmark.main(SMOKE_ARGS + ['--out', str(out)])
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))

    env = results['env']
    for key in ('device', 'torch', 'timm', 'cuda', 'cudnn', 'python', 'argv', 'date'):
        assert key in env
    assert env['args']['ours'] == ['ti'] and env['args']['peers'] == []

    rows = [r for r in results['rows'] if r['model'] == 'VMINet-Ti']
    assert len(rows) == 1 and len(results['rows']) == 1
    row = rows[0]
    assert row['error'] is None
    assert (row['mode'], row['dtype'], row['batch'], row['img_size']) == ('eager', 'bf16', 2, 64)
    assert row['img_s'] > 0 and row['train_step_ms'] > 0 and row['latency_b1_ms'] > 0
    assert row['latency_b1_graph_ms'] is None and row['peak_mb'] is None  # CUDA only
    assert 1.9 < row['params_m'] < 2.1
    assert row['reparam'] is True
    assert results['best'][0]['model'] == 'VMINet-Ti'
    assert 'profile' not in row  # only with --profile


def test_profile_keeps_the_top_operators(benchmark, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    rows = benchmark.main(SMOKE_ARGS + ['--profile', '2', '--no-train', '--no-latency',
                                        '--out', str(out)])['rows']
    profile = rows[0]['profile']
    assert 0 < len(profile) <= 25
    shares = [k['share'] for k in profile]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    assert any('conv' in k['name'] for k in profile)  # the network's own ops, on CPU
    assert all(k['ms_per_step'] > 0 and k['calls_per_step'] > 0 for k in profile)
    assert profile[0]['name'][:40] in capsys.readouterr().out
    assert json.loads(out.read_text())['rows'][0]['profile'] == profile


def test_fused_classifier_matches(benchmark):
    torch.manual_seed(0)
    model = benchmark.VMINetClassifier('ti').eval()
    for m in model.modules():  # non-trivial BN statistics, so the fold is really tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fused, applied = benchmark.fuse_for_inference(model)
        assert applied and expected.shape == (2, 1000)
        torch.testing.assert_close(fused(x), expected, rtol=1e-4, atol=1e-4)


def test_bad_arguments_are_rejected(benchmark):
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--device', 'cpu', '--ours', 'xxl'])
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--device', 'cpu', '--dtypes', 'int8'])
    with pytest.raises(SystemExit):
        benchmark.parse_args(['--device', 'cpu', '--profile', '-1'])
    with pytest.raises(SystemExit):  # freezing is an inductor option: compiled rows only
        benchmark.parse_args(['--device', 'cpu', '--modes', 'eager', '--freezing'])
    assert benchmark.parse_args(['--device', 'cpu', '--modes', 'compile', '--freezing']).freezing


def test_best_against_best_counts_graph_throughput(benchmark):
    def row(mode, img_s, graph):
        return dict(model='M', params_m=1.0, dtype='bf16', mode=mode, img_s=img_s,
                    img_s_graph=graph, latency_b1_ms=None, latency_b1_graph_ms=None,
                    train_step_ms=None)
    rows = [row('compile', 100.0, 150.0), row('compile+triton', 120.0, 130.0)]
    summary = benchmark.best_against_best(rows)
    assert (summary[0]['img_s'], summary[0]['img_s_mode']) == (150.0, 'compile+cudagraph')
    benchmark.mark_best(rows)
    assert rows[0]['best'] is True and 'best' not in rows[1]
    rows = [row('compile', 100.0, None), row('compile+triton', 120.0, None)]
    assert benchmark.best_against_best(rows)[0]['img_s_mode'] == 'compile+triton'
