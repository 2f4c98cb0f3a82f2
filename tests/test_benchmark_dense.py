"""tools/analysis/benchmark_dense.py: config edits, ratios, failures as data, CPU smoke runs."""
import json

import pytest
import torch
from tool_scripts import load_tool

TINY = ['--device', 'cpu', '--det-shape', '64', '96', '--seg-shape', '64', '64', '--steps', '1',
        '--warmup', '0']


@pytest.fixture(scope='module')
def dense():
    return load_tool('analysis/benchmark_dense.py')


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared CPU, more threads make these runs several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(dense, tmp_path, models):
    out = tmp_path / 'dense.json'
    returned = dense.main(TINY + ['--models', models, '--out', str(out)])
    results = json.loads(out.read_text())
    assert results == json.loads(json.dumps(returned))
    return results


def check_row(row, task, shape, groups):
    assert row['errors'] == [], row['errors']
    assert (row['task'], row['precision'], row['batch'], row['shape']) == (task, 'fp32', 2, shape)
    assert row['params_m'] > 10
    for phase in ('train', 'infer'):
        assert row[f'{phase}_ms'] > 0 and row[f'{phase}_p90_ms'] == row[f'{phase}_ms']
        assert row[f'{phase}_img_s'] == pytest.approx(2e3 / row[f'{phase}_ms'])
        assert row[f'{phase}_peak_gib'] is None  # CUDA only
    assert row['train_skipped_steps'] == 0 and row['backbone'] == 'eager'
    assert row['param_groups'] == groups
    # the backbone alone is part of a step: the rest of the step is what is left
    assert 0 < row['train_backbone_ms'] < row['train_ms']
    assert row['train_rest_ms'] == pytest.approx(row['train_ms'] - row['train_backbone_ms'])


@pytest.mark.slow  # 30-75 s on 2 shared cores: the RoI heads cost the same at any image size
def test_cpu_smoke_run_vminet(dense, tmp_path, one_thread):
    results = run(dense, tmp_path, 'mask_rcnn_vminet_s,upernet_vminet_s')
    env = results['env']
    for key in ('device', 'torch', 'mmcv', 'mmengine', 'mmdet', 'mmseg', 'python', 'date'):
        assert env[key]
    assert env['command'].startswith('python tools/analysis/benchmark_dense.py --device cpu')
    assert env['args']['models'] == ['mask_rcnn_vminet_s', 'upernet_vminet_s']

    det, seg = results['rows']
    assert (det['model'], seg['model']) == ('Mask R-CNN VMINet-S', 'UperNet VMINet-S')
    # the configs' own constructor: the paramwise_cfg's groups merged by their options
    check_row(det, 'det', [64, 96], 3)
    check_row(seg, 'seg', [64, 64], 3)
    assert det['cudnn_benchmark'] is False and seg['cudnn_benchmark'] is True  # the libraries'
    assert det['train_speedup_vs_swin'] is None  # no Swin-T in this run


@pytest.mark.slow
def test_cpu_smoke_run_swin(dense, tmp_path, one_thread):
    """mmdet's and mmseg's own Swin-T configs load, build without downloads and run."""
    results = run(dense, tmp_path, 'mask_rcnn_swin_t,upernet_swin_t')
    det, seg = results['rows']
    # mmdet's and mmseg's default constructor: one group per parameter
    check_row(det, 'det', [64, 96], 219)
    check_row(seg, 'seg', [64, 64], 220)
    assert det['train_speedup_vs_swin'] == 1.0 and seg['infer_speedup_vs_swin'] == 1.0


def test_prepare_config(dense):
    args = dense.parse_args(['--device', 'cpu', '--seg-shape', '256', '320'])
    args.device = 'cuda'  # the AMP settings only need a config, not a GPU
    det = dense.prepare_config(dense.load_config(dense.resolve_config(
        dense.SPECS['mask_rcnn_swin_t'].config)), 'det', args)
    assert det.model.backbone.init_cfg is None and det.model.test_cfg.rcnn.score_thr == 0.0
    assert det.optim_wrapper.type == 'AmpOptimWrapper' and det.optim_wrapper.dtype == 'float16'
    assert det.optim_wrapper.loss_scale == 'dynamic'
    assert det.optim_wrapper.optimizer.type == 'AdamW' and 'paramwise_cfg' in det.optim_wrapper
    assert dense.num_classes(det, 'det') == 80

    seg = dense.prepare_config(dense.load_config(dense.resolve_config(
        dense.SPECS['upernet_vminet_s'].config)), 'seg', args)
    assert seg.model.backbone.init_cfg is None and seg.model.pretrained is None
    assert seg.model.data_preprocessor.size == (256, 320)
    assert seg.optim_wrapper.dtype == 'bfloat16' and not seg.optim_wrapper.loss_scale.enabled
    assert seg.optim_wrapper.optimizer.lr == 6e-5
    assert dense.num_classes(seg, 'seg') == 150

    assert seg.optim_wrapper.constructor == 'MergedGroupsOptimWrapperConstructor'
    assert 'constructor' not in det.optim_wrapper  # mmdet's config: the default one
    args.merge_param_groups = True
    det = dense.prepare_config(dense.load_config(dense.resolve_config(
        dense.SPECS['mask_rcnn_swin_t'].config)), 'det', args)
    assert det.optim_wrapper.constructor == 'MergedGroupsOptimWrapperConstructor'

    args.device = 'cpu'
    cpu = dense.prepare_config(dense.load_config(dense.resolve_config(
        dense.SPECS['upernet_vminet_s'].config)), 'seg', args)
    assert cpu.optim_wrapper.type == 'OptimWrapper' and 'dtype' not in cpu.optim_wrapper


def test_compile_modes_wrap_only_the_backbone_or_extract_feat(dense, monkeypatch):
    args = dense.parse_args(['--device', 'cpu', '--backbone-modes', 'eager,compile,cudagraph'])
    assert args.backbone_modes == ['eager', 'compile', 'cudagraph']
    cfg = dense.prepare_config(dense.load_config(dense.resolve_config(
        dense.SPECS['upernet_vminet_s'].config)), 'seg', args)
    eager = dense.build(cfg, args, 'eager')
    assert not hasattr(eager.backbone.forward, '_torchdynamo_orig_callable')
    modes = []
    compile_ = torch.compile
    monkeypatch.setattr(torch, 'compile', lambda fn, **kw: modes.append(kw) or compile_(fn, **kw))
    for mode in ('compile', 'cudagraph'):
        compiled = dense.build(cfg, args, mode)
        # torch.compile's wrapper around the backbone's own forward; the heads and keys unchanged
        original = compiled.backbone.forward._torchdynamo_orig_callable
        assert original.__func__ is type(compiled.backbone).forward
        assert not hasattr(compiled.decode_head.forward, '_torchdynamo_orig_callable')
        assert list(compiled.state_dict()) == list(eager.state_dict())
    # cudagraph_neck: the model's extract_feat (backbone and neck), the backbone's forward as is
    with_neck = dense.build(cfg, args, 'cudagraph_neck')
    original = with_neck.extract_feat._torchdynamo_orig_callable
    assert original.__func__ is type(with_neck).extract_feat
    assert not hasattr(with_neck.backbone.forward, '_torchdynamo_orig_callable')
    assert list(with_neck.state_dict()) == list(eager.state_dict())
    assert modes == [dict(dynamic=False, mode='default'),
                     dict(dynamic=False, mode='reduce-overhead'),
                     dict(dynamic=False, mode='reduce-overhead')]


def test_backbone_modes_arguments(dense):
    assert dense.parse_args(['--device', 'cpu']).backbone_modes == ['eager']
    assert dense.parse_args(['--device', 'cpu', '--compile-backbone']).backbone_modes == [
        'compile']
    assert dense.parse_args(['--device', 'cpu', '--backbone-modes', 'compile, eager,compile']
                            ).backbone_modes == ['compile', 'eager']
    for argv in (['--backbone-modes', 'jit'], ['--backbone-modes', ','],
                 ['--compile-backbone', '--backbone-modes', 'eager']):
        with pytest.raises(SystemExit):
            dense.parse_args(['--device', 'cpu'] + argv)


def test_failure_is_recorded_not_fatal(dense, tmp_path, monkeypatch):
    monkeypatch.setitem(dense.SPECS, 'mask_rcnn_swin_t',
                        dense.DenseSpec('Mask R-CNN Swin-T', 'det', 'mmdet::swin/missing.py'))
    results = run(dense, tmp_path, 'mask_rcnn_swin_t')
    row, = results['rows']
    assert len(row['errors']) == 1 and row['errors'][0].startswith('build: FileNotFoundError')
    assert 'mmdet config swin/missing.py not found' in row['errors'][0]
    assert row['train_ms'] is None and row['infer_ms'] is None
    assert '| build: FileNotFoundError |' in dense.markdown_table(results['rows'])


def test_backbone_failure_keeps_the_step(dense, monkeypatch):
    """A backbone timed alone that fails (as a compiled one can) is an error of its own phase."""
    def fail(*args, **kwargs):
        raise RuntimeError('accessing tensor output of CUDAGraphs that has been overwritten')

    monkeypatch.setattr(dense, 'measure_train', lambda *args: dict(train_ms=12.5))
    monkeypatch.setattr(dense, 'measure_backbone', fail)
    args = dense.parse_args(TINY + ['--no-infer'])
    row = dense.benchmark_model('upernet_vminet_s', 'eager', args)
    assert row['train_ms'] == 12.5 and row['train_backbone_ms'] is None
    assert row['train_rest_ms'] is None
    assert row['errors'] == ['backbone: RuntimeError: accessing tensor output of CUDAGraphs that '
                             'has been overwritten']


@pytest.mark.parametrize('fast', [False, True])
def test_fast_seg_loss_applies_for_the_run(dense, tmp_path, monkeypatch, fast):
    """--fast-seg-loss: every decode head's loss uses mmvminet.seg_loss during the run only."""
    from mmseg.models.decode_heads import decode_head

    from mmvminet import seg_loss
    seen = []

    def fake_benchmark(key, mode, args, det_path=None):
        seen.append((decode_head.resize, decode_head.accuracy))
        raise RuntimeError('stop')

    monkeypatch.setattr(dense, 'benchmark_model', fake_benchmark)
    with pytest.raises(RuntimeError, match='stop'):  # and the ops are restored after a failure
        dense.main(TINY + ['--models', 'upernet_swin_t', '--out', str(tmp_path / 'x.json')]
                   + (['--fast-seg-loss'] if fast else []))
    assert seen == [(seg_loss.resize, seg_loss.accuracy) if fast else
                    (seg_loss.mmseg_resize, seg_loss.mmseg_accuracy)]
    assert (decode_head.resize, decode_head.accuracy) == (seg_loss.mmseg_resize,
                                                          seg_loss.mmseg_accuracy)


def test_ratios_and_table(dense):
    rows = [dict(key='mask_rcnn_vminet_s', model='A', task='det', precision='fp16',
                 backbone='eager', det_path='mmdet', params_m=33.4, param_groups=3,
                 train_ms=100.0,
                 train_p90_ms=110.0,
                 train_img_s=20.0, train_peak_gib=6.0, train_backbone_ms=40.0,
                 train_rest_ms=60.0, errors=[]),
            dict(key='mask_rcnn_swin_t', model='B', task='det', precision='fp16',
                 backbone='eager', det_path='mmdet', params_m=47.8, train_ms=150.0,
                 train_p90_ms=160.0,
                 train_img_s=13.3, train_peak_gib=8.0,
                 errors=['infer: OutOfMemoryError: CUDA out of memory']),
            dict(key='upernet_vminet_s', model='C', task='seg', precision='bf16',
                 backbone='eager', det_path=None, params_m=38.3, train_ms=50.0,
                 train_peak_gib=None,
                 errors=[]),
            dict(key='mask_rcnn_vminet_s', model='A', task='det', precision='fp16',
                 backbone='cudagraph', det_path='mmdet', params_m=33.4, train_ms=80.0,
                 train_peak_gib=7.0, errors=[]),
            dict(key='mask_rcnn_swin_t', model='B', task='det', precision='fp16',
                 backbone='compile', det_path='mmdet', params_m=47.8, train_ms=120.0,
                 train_peak_gib=7.5, errors=[]),
            dict(key='mask_rcnn_vminet_s', model='A', task='det', precision='fp16',
                 backbone='cudagraph', det_path='fast', params_m=33.4, train_ms=64.0,
                 train_peak_gib=6.5, errors=[])]
    dense.add_ratios(rows)
    assert rows[0]['train_speedup_vs_swin'] == 1.5 and rows[0]['train_mem_vs_swin'] == 0.75
    assert rows[0]['train_free_backbone_speedup_vs_swin'] == 2.5  # 150 / 60
    assert rows[1]['train_speedup_vs_swin'] == 1.0 and rows[0]['infer_speedup_vs_swin'] is None
    assert rows[2]['train_speedup_vs_swin'] is None  # its baseline did not run
    assert rows[3]['train_speedup_vs_swin'] is None  # no Swin-T row in its mode
    assert rows[5]['train_speedup_vs_swin'] is None  # nor on its detector path
    # the fast path against mmdet's, the same model and backbone mode
    assert rows[5]['train_speedup_vs_mmdet_path'] == 1.25  # 80 / 64
    assert rows[0]['train_speedup_vs_mmdet_path'] is None
    lines = dense.markdown_table(rows).splitlines()
    assert len(lines) == 8
    assert lines[2].startswith('| A | det | fp16 | eager | mmdet | 33.40 | 3 | 100.0 (110.0) |')
    assert '| 1.50x | - | 0.75 | 40.0 | 60.0 | 2.50x |' in lines[2]
    assert '| cudagraph | fast |' in lines[7] and '| 6.50 | - | 1.25x | - |' in lines[7]
    assert lines[3].endswith('| infer: OutOfMemoryError |')

    # the fastest mode of each model, against Swin-T's fastest of the same task
    best = {b['key']: b for b in dense.best_vs_best(rows)}
    assert list(best) == ['mask_rcnn_vminet_s', 'mask_rcnn_swin_t', 'upernet_vminet_s']
    assert best['mask_rcnn_vminet_s']['backbone'] == 'cudagraph'
    assert best['mask_rcnn_vminet_s']['det_path'] == 'fast'
    assert best['mask_rcnn_vminet_s']['swin_backbone'] == 'compile'
    assert best['mask_rcnn_vminet_s']['swin_modes_measured'] == ['eager/mmdet', 'compile/mmdet']
    assert best['mask_rcnn_vminet_s']['speedup_vs_swin'] == 1.875  # 120 / 64
    assert best['mask_rcnn_vminet_s']['mem_vs_swin'] == pytest.approx(6.5 / 7.5)
    assert best['upernet_vminet_s']['speedup_vs_swin'] is None
    lines = dense.best_table(list(best.values())).splitlines()
    assert lines[2] == ('| A | cudagraph (fast) | 64.0 | 6.50 | 1.88x | 0.87 '
                        '| compile (of eager/mmdet, compile/mmdet) |')
    assert lines[4] == '| C | eager | 50.0 | - | - | - | - |'  # no Swin-T UperNet ran


def test_bad_arguments_are_rejected(dense):
    for argv in (['--models', 'mask_rcnn_r50'], ['--steps', '0'], ['--no-train', '--no-infer']):
        with pytest.raises(SystemExit):
            dense.parse_args(['--device', 'cpu'] + argv)
    assert dense.parse_args(['--device', 'cpu']).models == list(dense.SPECS)


def test_profile_steps_ranks_the_operators(dense):
    # n^3 multiply-adds against n^2 for the rest: at n = 1024 the product dominates by ~1000x,
    # so it ranks first even on a loaded CI machine (at n = 256 it once did not)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    top = dense.profile_steps(lambda: torch.relu(a @ b).sum(), 3, 'cpu', top=2)
    assert len(top) == 2 and top[0]['ms_per_step'] >= top[1]['ms_per_step'] > 0
    assert 'mm' in top[0]['name']  # the matrix product takes the most time
    assert 0 < sum(k['share'] for k in top) <= 1
    assert all(k['calls_per_step'] >= 1 for k in top)
    with pytest.raises(SystemExit):
        dense.parse_args(['--device', 'cpu', '--profile-steps', '-1'])


def test_det_paths_switch_the_mask_targets_for_their_rows(dense, monkeypatch):
    """--det-paths: one row per detector and path, FastDetTrainHook's mask targets in the 'fast'
    rows only, mmdet's restored after each (a failed phase included); segmentors once."""
    from mmdet.models.roi_heads.mask_heads import fcn_mask_head

    from mmvminet import det_targets
    seen = []

    def fake_train(model, data, cfg, args):
        seen.append(fcn_mask_head.mask_target)
        raise RuntimeError('stop')

    monkeypatch.setattr(dense, 'measure_train', fake_train)
    args = dense.parse_args(TINY + ['--no-infer', '--det-paths', 'mmdet,fast,fast',
                                    '--models', 'mask_rcnn_vminet_s,upernet_vminet_s'])
    assert args.det_paths == ['mmdet', 'fast']
    results = dict(rows=[])
    monkeypatch.setattr(dense, 'write_json', lambda *a: None)
    dense.run_all([(key, 'eager', path) for key, path in (
        ('mask_rcnn_vminet_s', 'mmdet'), ('mask_rcnn_vminet_s', 'fast'),
        ('upernet_vminet_s', None))], results, args)
    assert seen == [det_targets.mmdet_mask_target, det_targets.mask_target,
                    det_targets.mmdet_mask_target]
    assert fcn_mask_head.mask_target is det_targets.mmdet_mask_target
    assert [r['det_path'] for r in results['rows']] == ['mmdet', 'fast', None]
    assert all(r['errors'][0] == 'train: RuntimeError: stop' for r in results['rows'])
    with pytest.raises(SystemExit):
        dense.parse_args(['--device', 'cpu', '--det-paths', 'slow'])


def test_backbone_timing_with_the_neck_times_extract_feat(dense, monkeypatch, one_thread):
    args = dense.parse_args(TINY)
    cfg = dense.prepare_config(dense.load_config(dense.resolve_config(
        dense.SPECS['upernet_vminet_s'].config)), 'seg', args)
    model = dense.build(cfg, args, 'eager')
    data = dense.seg_batch(args.seg_shape, args.batch, dense.num_classes(cfg, 'seg'))
    calls = []
    extract_feat = model.extract_feat
    monkeypatch.setattr(model, 'extract_feat', lambda x: calls.append(x.shape) or extract_feat(x))
    timing = dense.measure_backbone(model, data, 'seg', args, with_neck=True)
    assert timing['train_backbone_ms'] > 0
    assert calls == [(2, 3, 64, 64)] * (args.warmup + args.steps)
    assert all(p.grad is None for p in model.parameters())  # dropped after each step
