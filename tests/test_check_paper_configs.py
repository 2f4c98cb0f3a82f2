"""tools/analysis/check_paper_configs.py: the six prepared configs, the data, the result table."""
import json

import pytest
import torch
from tool_scripts import load_tool

from mmvminet.registry import build_model

check = load_tool('analysis/check_paper_configs.py')


def args_for(tmp_path, *extra):
    return check.parse_args(['--data', str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'w'),
                             '--det-iters', '40', '--seg-iters', '20', '--warmup', '10',
                             *extra])


def test_every_model_gets_the_same_data_budget_and_optimizer(tmp_path):
    args = args_for(tmp_path)
    configs = {key: check.prepare_config(key, args, cuda=True) for key in check.MODELS}
    for key, cfg in configs.items():
        task = check.MODELS[key].task
        iters = 40 if task == 'det' else 20
        assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=iters,
                                     val_interval=iters)
        assert [s['type'] for s in cfg.param_scheduler] == ['LinearLR', 'MultiStepLR']
        assert cfg.param_scheduler[0]['end'] == 10
        assert cfg.param_scheduler[1]['milestones'] == [int(0.75 * iters), int(0.9 * iters)]
        wrapper = cfg.optim_wrapper
        assert (wrapper.type, wrapper.dtype) == ('AmpOptimWrapper', 'float16')
        assert {k: v for k, v in wrapper.optimizer.items() if k != 'fused'} == dict(
            type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)
        assert 'clip_grad' not in wrapper
        backbone = cfg.model.backbone
        assert backbone.init_cfg is None and not cfg.model.get('pretrained')
        assert backbone.get('frozen_stages', -1) == -1 and not backbone.get('norm_eval', False)
        for loader, batch in (('train_dataloader', 2), ('val_dataloader', 1)):
            dataset = cfg[loader].dataset
            assert cfg[loader].batch_size == batch
            assert dataset.data_root == str(tmp_path / 'data' / task)
        if task == 'det':
            assert cfg.train_dataloader.dataset.metainfo.classes == check.shapes.CLASSES
            assert cfg.val_evaluator.ann_file == str(
                tmp_path / 'data' / 'det' / 'annotations' / 'instances_val.json')
        else:
            loads = [step for loader in ('train_dataloader', 'val_dataloader')
                     for step in cfg[loader].dataset.pipeline if step.type == 'LoadAnnotations']
            assert len(loads) == 2 and not any(step.reduce_zero_label for step in loads)
        model = build_model(cfg.model, cfg.default_scope)
        if task == 'det':
            assert model.roi_head.bbox_head.num_classes == 5
            assert model.roi_head.mask_head.num_classes == 5
        else:
            assert model.decode_head.num_classes == model.auxiliary_head.num_classes == 6
    # each keeps its own network and parameter groups
    assert configs['mask_rcnn_vminet'].model.neck.type == 'SimpleFeaturePyramid'
    assert configs['mask_rcnn_r50'].model.neck.type == 'FPN'
    assert 'paramwise_cfg' in configs['mask_rcnn_swin_t'].optim_wrapper
    assert configs['upernet_vminet'].optim_wrapper.constructor == \
        'MergedGroupsOptimWrapperConstructor'
    # the same AdamW for all, in the implementation the config picks (ours: fused)
    assert configs['mask_rcnn_vminet'].optim_wrapper.optimizer.fused is True
    assert 'fused' not in configs['mask_rcnn_r50'].optim_wrapper.optimizer


def test_cpu_runs_train_in_fp32(tmp_path):
    cfg = check.prepare_config('mask_rcnn_r50', args_for(tmp_path), cuda=False)
    assert cfg.optim_wrapper.type == 'OptimWrapper' and 'dtype' not in cfg.optim_wrapper


def test_paper_detector_takes_a_coco_scene_and_learns_from_it(coco_data, tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    args = check.parse_args(['--data', str(coco_data), '--arch', 'xs'])
    cfg = check.prepare_config('mask_rcnn_vminet', args, cuda=False)
    init_default_scope('mmdet')
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 3
    sample = dataset[0]
    assert max(sample['inputs'].shape[1:]) <= 1333 and min(sample['inputs'].shape[1:]) <= 800
    assert len(sample['data_samples'].gt_instances) >= 3
    torch.manual_seed(0)
    model = build_model(cfg.model, 'mmdet')
    model.train()
    data = model.data_preprocessor(dict(inputs=[sample['inputs']],
                                        data_samples=[sample['data_samples']]), True)
    total, _ = model.parse_losses(model(**data, mode='loss'))
    total.backward()
    assert torch.isfinite(total)
    assert model.neck.levels[0][1].weight.grad.abs().sum() > 0


def test_summaries_ratios_and_verdicts():
    records = [{'loss': 3.0, 'time': 9.0, 'iter': 10, 'step': 10},
               {'loss': 2.0, 'time': 0.5, 'iter': 20, 'step': 20},
               {'loss': 1.0, 'time': 0.7, 'iter': 30, 'step': 30},
               {'coco/bbox_mAP': 0.38, 'coco/segm_mAP': 0.3, 'step': 30}]
    row = check.summarize_run('det', records)
    assert row == {'coco/bbox_mAP': 0.38, 'coco/segm_mAP': 0.3, 'final_loss': 2.0,
                   's_per_iter': pytest.approx(0.6), 'iters': 30}
    assert check.summarize_run('seg', [])['mIoU'] is None
    rows = [dict(key='mask_rcnn_vminet', name='ours', task='det', config='a.py', status='ok',
                 **row),
            dict(key='mask_rcnn_r50', name='R-50', task='det', config='b.py', status='ok',
                 **{'coco/bbox_mAP': 0.4}),
            dict(key='upernet_vminet', name='ours seg', task='seg', config='c.py', status='ok',
                 mIoU=50.0)]
    check.add_ratios(rows)
    assert rows[0]['vs_baseline'] == pytest.approx(0.95) and rows[1]['vs_baseline'] == 1.0
    assert rows[2]['vs_baseline'] is None
    lines = check.verdicts(rows)
    assert lines[0].startswith('ours: 0.95x') and lines[0].endswith('target 0.9x met')
    assert 'no ratio' in lines[1]
    table = check.results_table(rows)
    assert '| ours | ' in table and '0.95x' in table
    rows[0]['status'] = 'stopped at --time-limit, iter 25; evaluated at iter 20'
    assert check.verdicts(rows)[0].endswith(
        'met (not a whole run: stopped at --time-limit, iter 25; evaluated at iter 20)')


def test_bad_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        check.parse_args(['--models', 'mask_rcnn_r18'])
    assert "unknown model ['mask_rcnn_r18']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check.parse_args(['--det-iters', '0'])
    assert '--det-iters must be >= 1' in capsys.readouterr().err


def test_end_to_end_on_the_cpu(coco_data, tmp_path, capsys):
    out = tmp_path / 'report.json'
    check.main(['--data', str(coco_data), '--work-dir', str(tmp_path / 'w'), '--arch', 'xs',
                '--models', 'upernet_vminet', '--seg-iters', '2', '--warmup', '1',
                '--num-train', '3', '--num-val', '2', '--loader-workers', '0',
                '--out', str(out)])
    report = json.loads(out.read_text())
    (row, ) = report['rows']
    assert row['status'] == 'ok' and row['mIoU'] is not None and row['iters'] == 2
    assert report['env']['command'].startswith('python tools/analysis/check_paper_configs.py')
    assert out.with_suffix('.md').read_text().count('| UperNet VMINet-XS (paper) |') == 1
    printed = capsys.readouterr().out
    assert 'training 1 models at once' in printed and 'no ratio' in printed
    # what --time-limit does to a stopped run: tools/test.py on its last checkpoint
    at_stop = check.evaluate_stopped(['upernet_vminet', 'upernet_r50'], str(tmp_path / 'w'))
    assert list(at_stop) == ['upernet_vminet']  # upernet_r50 has no run, so no checkpoint
    assert at_stop['upernet_vminet']['evaluated_iter'] == 2
    assert at_stop['upernet_vminet']['mIoU'] == pytest.approx(row['mIoU'], abs=1e-6)
    # --resume: a finished run is reported as it is, without training
    args = ['--data', str(coco_data), '--work-dir', str(tmp_path / 'w'), '--arch', 'xs',
            '--models', 'upernet_vminet', '--warmup', '1', '--num-train', '3', '--num-val', '2',
            '--loader-workers', '0', '--out', str(out), '--resume']
    (again, ) = check.main(args + ['--seg-iters', '2'])['rows']
    assert again['status'] == 'ok' and again['mIoU'] == row['mIoU']
    printed = capsys.readouterr().out
    assert 'finished by an earlier command: upernet_vminet' in printed
    assert 'training 0 models at once' in printed
    # ... one trained to its end but stopped in its final validation (no metrics) is evaluated
    # at its last checkpoint with tools/test.py, not resumed (which trains nothing and evaluates
    # nothing), and counts as a whole run
    scalars = next((tmp_path / 'w' / 'upernet_vminet').glob('*/vis_data/scalars.json'))
    scalars.write_text(''.join(line for line in scalars.read_text().splitlines(keepends=True)
                               if 'mIoU' not in line))
    (evaluated, ) = check.main(args + ['--seg-iters', '2'])['rows']
    assert evaluated['status'] == 'ok, evaluated at iter 2 by tools/test.py'
    assert evaluated['mIoU'] == pytest.approx(row['mIoU'], abs=1e-6)
    printed = capsys.readouterr().out
    assert 'not evaluated: upernet_vminet' in printed and 'training 0 models at once' in printed
    assert 'not a whole run' not in printed
    assert 'resumed epoch' not in (tmp_path / 'w' / 'upernet_vminet.log').read_text()
    # ... and one with a checkpoint short of its schedule goes on from it
    (longer, ) = check.main(args + ['--seg-iters', '3'])['rows']
    assert longer['status'] == 'ok' and longer['iters'] == 3 and longer['mIoU'] is not None
    log = (tmp_path / 'w' / 'upernet_vminet.log').read_text()
    assert 'resumed epoch: 0, iter: 2' in log and log.count('Iter(train)') == 2


def test_resume_goes_on_with_a_stopped_detector(coco_data, tmp_path):
    """The second call of a check split by --time-limit: a detector (mmdet's loop, batch sampler
    and COCO evaluation) with a checkpoint short of its schedule goes on from it."""
    args = ['--data', str(coco_data), '--work-dir', str(tmp_path / 'w'), '--arch', 'xs',
            '--models', 'mask_rcnn_vminet', '--warmup', '1', '--num-train', '3', '--num-val',
            '2', '--loader-workers', '0', '--out', str(tmp_path / 'report.json')]
    (first, ) = check.main(args + ['--det-iters', '1'])['rows']
    assert first['status'] == 'ok' and first['iters'] == 1
    (longer, ) = check.main(args + ['--det-iters', '2', '--resume'])['rows']
    assert longer['status'] == 'ok' and longer['iters'] == 2
    assert longer['coco/bbox_mAP'] is not None and longer['coco/segm_mAP'] is not None
    log = (tmp_path / 'w' / 'mask_rcnn_vminet.log').read_text()  # both commands' runs
    assert 'resumed epoch: 0, iter: 1' in log and 'Advance dataloader 1 steps' in log


def test_time_limit_stops_the_runs_and_still_reports(coco_data, tmp_path, capsys):
    out = tmp_path / 'report.json'
    args = ['--data', str(coco_data), '--work-dir', str(tmp_path / 'w'), '--arch', 'xs',
            '--models', 'upernet_vminet', '--seg-iters', '1000', '--num-train', '3',
            '--num-val', '2', '--loader-workers', '0', '--time-limit', '0.01', '--out', str(out)]
    with pytest.raises(SystemExit) as exit_info:
        check.main(args)
    assert exit_info.value.code == 1
    (row, ) = json.loads(out.read_text())['rows']
    assert row['status'].startswith('stopped at --time-limit') and row['mIoU'] is None
    assert 'evaluated at' not in row['status']  # stopped before its first checkpoint
    cfg = check.Config.fromfile(str(tmp_path / 'w' / 'upernet_vminet' / 'config.py'))
    assert cfg.default_hooks.checkpoint.interval == 100  # --checkpoint-every's default
    assert 'stopped at --time-limit' in capsys.readouterr().out
    # a run the stop left without a checkpoint is said to start over, not resumed in silence
    with pytest.raises(SystemExit):
        check.main(args + ['--resume'])
    assert ('no checkpoint to resume from, trained from the start: upernet_vminet'
            in capsys.readouterr().out)
