"""tools/analysis/benchmark_det_train.py: the clock hook, the summaries and a CPU run of a path."""
import json
import pytest
import torch
from mmengine.config import Config
from tool_scripts import load_tool

bench = load_tool('analysis/benchmark_det_train.py')


def run(path, shapes, times, loop_s=10.0):
    return dict(path=path, loop_s=loop_s, process_s=loop_s + 5,
                iterations=[dict(shape=list(s), ms=t, data_ms=1.0) for s, t in zip(shapes, times)])


def test_iterations_are_split_by_whether_their_batch_shape_came_before():
    shapes = [(800, 1088), (800, 1088), (800, 1216), (800, 1088), (1344, 800), (800, 1216)]
    summary = bench.summarize(run('mmdet', shapes, [900, 100, 400, 110, 500, 120]), 3)
    assert summary['shapes'] == 3 and summary['iters'] == 6
    # the first iteration (the loader starting, everything new) counts in neither
    assert summary['seen_shape_iters'] == 3 and summary['seen_shape_ms'] == pytest.approx(110)
    assert summary['new_shape_iters'] == 2 and summary['new_shape_ms'] == pytest.approx(450)
    assert summary['steady_ms'] == pytest.approx((110 + 500 + 120) / 3)
    assert summary['steady_median_ms'] == 120 and summary['steady_data_ms'] == 1.0


def test_speedups_are_mmdets_path_over_the_hooks_and_need_both():
    shapes = [(800, 1088), (800, 1216), (800, 1088), (800, 1216)]
    mmdet = bench.summarize(run('mmdet', shapes, [900, 400, 300, 300], loop_s=30.0), 1)
    fast = bench.summarize(run('fast', shapes, [900, 400, 200, 150], loop_s=20.0), 1)
    speedup = bench.speedups([mmdet, fast])
    assert speedup['loop_s'] == pytest.approx(1.5)
    assert speedup['seen_shape_ms'] == pytest.approx(300 / 175)
    assert speedup['new_shape_ms'] == pytest.approx(1.0)
    assert bench.speedups([fast]) is None
    text = bench.table([mmdet, fast], speedup)
    assert '| speed-up (mmdet / fast) |  | 1.50x |' in text and '| fast | 4 (2) |' in text


def test_the_clock_pads_the_batch_shape_and_times_each_iteration(monkeypatch):
    now = iter([10.0, 10.5, 11.0, 12.0])
    monkeypatch.setattr(bench.time, 'perf_counter', lambda: next(now))
    clock = bench.IterationClock(divisor=32)
    clock.before_train(None)  # 10.0
    batch = dict(inputs=[torch.zeros(3, 800, 1067), torch.zeros(3, 751, 1333)])
    clock.before_train_iter(None, 0, batch)  # 10.5: half a second waiting for data
    clock.after_train_iter(None, 0, batch)  # 11.0
    clock.after_train(None)  # 12.0
    assert clock.rows == [dict(data_ms=500.0, shape=[800, 1344], ms=1000.0)]
    assert (clock.loop_begin, clock.loop_end) == (10.0, 12.0)


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(['--paths', 'mmdet,slow'])
    assert "unknown ['slow']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(['--iters', '10', '--steady-from', '10'])
    assert '--steady-from < --iters' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(['configs/no_such_config.py'])
    assert 'no config at configs/no_such_config.py' in capsys.readouterr().err


def test_cpu_run_of_the_hooks_path_times_every_iteration_in_the_planned_shapes(coco_data,
                                                                              tmp_path):
    out = tmp_path / 'bench.json'
    resize = 'train_dataloader.dataset.pipeline.2.scale=(320,192)'  # seconds on the CPU
    argv = ['configs/mask_rcnn_vminet_xs_1x.py', '--data', str(coco_data), '--iters', '4',
            '--steady-from', '1', '--batch', '2', '--loader-workers', '0', '--paths', 'fast',
            '--work-dir', str(tmp_path / 'w'), '--out', str(out), '--cfg-options', resize]
    result = bench.main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (summary, ) = result['summaries']
    assert summary['path'] == 'fast' and result['speedup'] is None
    assert len(summary['iterations']) == 4 and 0 < summary['loop_s'] < summary['process_s']
    assert sum(row['ms'] for row in summary['iterations']) / 1e3 <= summary['loop_s']
    # 3 images, 2 an iteration: the 4 iterations span 3 epochs, each shuffled anew; the plan,
    # made without training, has the shapes the run met, in order
    shapes = [row['shape'] for row in summary['iterations']]
    assert all(max(s) <= 320 and min(s) <= 192 and s[0] % 32 == s[1] % 32 == 0 for s in shapes)
    plan = bench.main(argv + ['--plan-shapes'])
    assert plan['shapes'] == shapes and sum(plan['new_per_10']) == summary['shapes']
    assert plan['epoch_starts'] == [3]  # 1-based: two batches an epoch, one of them of 1 image
    config = Config.fromfile(tmp_path / 'w' / 'fast' / 'config.py')
    assert dict(type='FastDetTrainHook') in config.custom_hooks
    resize_step = config.train_dataloader.dataset.pipeline[2]
    assert resize_step.type == 'Resize' and tuple(resize_step.scale) == (320, 192)
    assert 'speed-up' not in out.with_suffix('.md').read_text()


@pytest.mark.parametrize('pipeline, error', [
    ([dict(type='Resize', scale=(1333, 800), keep_ratio=True),
      dict(type='RandomCrop', crop_size=(384, 600))], r"also has \['RandomCrop'\]"),
    ([dict(type='RandomResize', scale=(1333, 800), keep_ratio=True)], 'one keep-ratio Resize'),
    ([dict(type='Resize', scale=(1333, 800), keep_ratio=False)], 'one keep-ratio Resize'),
])
def test_shapes_are_planned_only_for_a_keep_ratio_resize(pipeline, error):
    cfg = Config(dict(train_dataloader=dict(dataset=dict(pipeline=pipeline)),
                      randomness=dict(seed=0), model=dict(data_preprocessor=dict())))
    with pytest.raises(ValueError, match=error):
        bench.planned_shapes(cfg, 10)


def test_new_shapes_are_counted_per_ten_iterations():
    shapes = [[800, 1088]] * 3 + [[800, 1216]] + [[800, 1088]] * 7 + [[1344, 800], [800, 1216]]
    assert bench.new_shape_counts(shapes) == [2, 1]
    assert bench.new_shape_counts(shapes, every=4) == [2, 0, 1, 0]


def test_a_failing_path_names_its_log_and_its_error(coco_data, tmp_path):
    with pytest.raises(SystemExit, match=r'\[mmdet\] training failed .*mmdet\.log') as error:
        bench.main(['configs/mask_rcnn_vminet_xs_1x.py', '--data', str(coco_data), '--iters',
                    '2', '--steady-from', '0', '--paths', 'mmdet', '--work-dir', str(tmp_path),
                    '--out', str(tmp_path / 'o.json'), '--cfg-options', 'model.backbone.arch=zz'])
    assert 'zz' in str(error.value) and not (tmp_path / 'o.json').exists()

