"""tools/analysis/profile_det_step.py: the prepared config, the ranges, a CPU run's parts table."""
import json
from types import SimpleNamespace

import pytest
import torch
from tool_scripts import load_tool

profile = load_tool('analysis/profile_det_step.py')
CPU, CUDA = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA


def test_config_trains_only_and_adds_no_hook_unasked(tmp_path):
    args = profile.parse_args(['--data', str(tmp_path), '--iters', '5', '--profile-iters', '2'])
    cfg = profile.prepare_config(args, cuda=False)
    assert cfg.train_cfg.max_iters == 5 and cfg.optim_wrapper.type == 'OptimWrapper'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert all(cfg[key] is None for key in ('val_cfg', 'val_dataloader', 'val_evaluator',
                                            'test_cfg', 'test_dataloader', 'test_evaluator'))
    assert cfg.default_hooks.checkpoint is None
    assert cfg.train_dataloader.dataset.data_root == str(tmp_path / 'det')
    assert 'FastDetTrainHook' not in str(cfg.get('custom_hooks'))
    args = profile.parse_args(['--data', str(tmp_path), '--fast-det-train'])
    assert profile.prepare_config(args, cuda=False).custom_hooks[-1] == dict(
        type='FastDetTrainHook')


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        profile.parse_args(['--iters', '3', '--profile-iters', '2'])
    assert '--iters > --profile-iters + 1' in capsys.readouterr().err


def test_rows_of_nested_ranges_on_the_cpu():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            with torch.profiler.record_function(profile.PREFIX + 'outer'):
                torch.ones(8).add(1)
                for _ in range(3):
                    with torch.profiler.record_function(profile.PREFIX + 'inner'):
                        torch.ones(8).mul(2).sum()
    rows = profile.part_rows(prof.events(), iters=2)
    assert rows['outer']['calls'] == 1 and rows['inner']['calls'] == 3
    assert rows['inner']['ops'] == 3 * 3 and rows['outer']['ops'] == 2 + 3 * 3  # top-level aten
    assert 0 < rows['inner']['host_ms'] <= rows['outer']['host_ms']
    assert rows['outer']['syncs'] == rows['outer']['device_ms'] == 0
    assert rows['outer']['syncing_ops'] == 0
    top = profile.top_host_ops(prof.events(), iters=2, top=3)
    assert len(top) == 3 and not any(op['name'].startswith(profile.PREFIX) for op in top)
    assert top[0]['self_host_ms'] >= top[1]['self_host_ms'] >= top[2]['self_host_ms'] > 0
    calls = {op['name']: op['calls'] for op in profile.top_host_ops(prof.events(), iters=2)}
    assert calls['aten::mul'] == 3 and calls['aten::add'] == 1  # per iteration


def test_syncing_operators_are_counted_on_the_cpu_nested_ones_too():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.profiler.record_function(profile.PREFIX + 'part'):
            x = torch.arange(6.0)
            x[x > 2].sum()  # aten::index -> aten::nonzero
            bool(x.max() > 4)  # aten::is_nonzero -> aten::item -> aten::_local_scalar_dense
            x.unique()
            torch.where(x > 2, x, 0)  # no sync
    row = profile.part_rows(prof.events(), iters=1)['part']
    assert row['syncing_ops'] == 3


def event(name, thread, start, end, children=(), device_type=CPU, device_ms=0.0):
    """A FunctionEvent's fields that part_rows reads, with times in microseconds."""
    e = SimpleNamespace(name=name, thread=thread, device_type=device_type, cpu_parent=None,
                        time_range=SimpleNamespace(start=start, end=end),
                        cpu_time_total=end - start, device_time_total=device_ms * 1e3,
                        cpu_children=list(children))
    for child in children:
        child.cpu_parent = e
    return e


def test_cuda_rows_count_syncs_and_the_backward_threads_work():
    item = [event('aten::_local_scalar_dense', 1, 12, 20, [
        event('cudaMemcpyAsync', 1, 13, 18), event('cudaStreamSynchronize', 1, 18, 19)])]
    backward_thread = [event('autograd::engine::evaluate_function: MulBackward0', 2, 40, 50,
                             [event('aten::mul', 2, 41, 49, device_ms=0.5)], device_ms=0.5)]
    events = [event('part: step', 1, 10, 100, [
        event('aten::item', 1, 11, 21, item), event('part: backward', 1, 30, 90)],
        device_ms=1.0)] + backward_thread
    events += [c for e in list(events) for c in profile.with_descendants(e.cpu_children)]
    events.append(event('part: step', 0, 10, 100, device_type=CUDA, device_ms=0.09))  # on the GPU
    rows = profile.part_rows(events, iters=1)
    step, backward = rows['step'], rows['backward']
    assert step['calls'] == backward['calls'] == 1
    assert step['syncs'] == 1 and step['sync_ms'] == pytest.approx(0.006)  # copy and sync
    assert (step['ops'], backward['ops']) == (2, 1)  # item and mul; mul on the other thread
    assert step['device_ms'] == pytest.approx(1.5) and backward['device_ms'] == 0.5
    assert backward['syncs'] == 0 and step['host_ms'] == pytest.approx(0.09)
    assert step['syncing_ops'] == 1 and backward['syncing_ops'] == 0


def test_gpu_busy_time_is_the_union_of_the_kernels():
    def kineto(start, end, device_type=CUDA, annotation=False):
        return SimpleNamespace(start_ns=lambda: start, duration_ns=lambda: end - start,
                               device_type=lambda: device_type,
                               is_user_annotation=lambda: annotation)
    events = [kineto(0, 2e6), kineto(1e6, 3e6), kineto(5e6, 6e6), kineto(0, 9e6, CPU),
              kineto(0, 9e6, annotation=True)]
    prof = SimpleNamespace(profiler=SimpleNamespace(
        kineto_results=SimpleNamespace(events=lambda: events)))
    assert profile.busy_ms(prof) == pytest.approx(4.0)


def test_cpu_run_reports_every_part_nested_and_adding_up(coco_data, tmp_path, monkeypatch):
    prepare = profile.prepare_config

    def small_images(args, cuda):  # the CPU run takes seconds at this size
        cfg = prepare(args, cuda)
        for step in cfg.train_dataloader.dataset.pipeline:
            if step.type == 'Resize':
                step.scale = (320, 192)
        return cfg

    monkeypatch.setattr(profile, 'prepare_config', small_images)
    out = tmp_path / 'profile.json'
    argv = ['configs/mask_rcnn_vminet_xs_1x.py', '--data', str(coco_data), '--iters', '3',
            '--profile-iters', '1', '--batch', '1', '--loader-workers', '0',
            '--work-dir', str(tmp_path / 'w'), '--out', str(out)]
    returned = profile.main(argv)  # the data made with 3 scenes, not --num-train's 64, is used
    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(returned))
    parts = {r['part']: r for r in result['parts']}
    assert list(parts) == [name for name, *_ in profile.PARTS]  # Mask R-CNN has every part
    for name, row in parts.items():
        assert row['host_ms'] > 0 and row['calls'] >= 1 and row['syncs'] == 0, name
        if row['parent'] is not None:
            parent = parts[row['parent']]
            assert row['host_ms'] <= parent['host_ms'] and row['depth'] == parent['depth'] + 1
    for name in ('data loading', 'train_step', 'backbone', 'backward', 'optimizer step'):
        assert parts[name]['calls'] == 1 and parts[name]['ops'] > 0, name
    assert parts['hooks']['calls'] == 2  # before and after the iteration
    # mmdet's sampler finds its positives with nonzero; our backbone reads nothing back
    assert parts['rpn sampler']['syncing_ops'] > 0 and parts['backbone']['syncing_ops'] == 0
    top = sum(r['host_ms'] for r in parts.values() if r['parent'] is None)
    assert 0.9 * result['iteration_ms'] < top <= result['iteration_ms']
    in_step = sum(r['host_ms'] for r in parts.values() if r['parent'] == 'train_step')
    assert 0.9 * parts['train_step']['host_ms'] < in_step <= parts['train_step']['host_ms']
    assert result['gpu_busy_ms'] is None and result['env']['command'].startswith(
        'python tools/analysis/profile_det_step.py configs/mask_rcnn_vminet_xs_1x.py')
    assert not list((tmp_path / 'w').glob('*.pth'))
    assert 'Iter(val)' not in next((tmp_path / 'w').glob('*/*.log')).read_text()
    text = out.with_suffix('.md').read_text()
    assert '| train_step | 1.0 |' in text and '| &nbsp;&nbsp;backbone | 1.0 |' in text
    table = text.split('The most host time')[0]
    assert table.count('\n| ') == len(parts) + 3  # the header, the rule and the iteration
    assert 0 < len(result['top_host_ops']) <= 25 and '| operator | calls | self host ms |' in text
