"""Issue #7: distributed training verified, not assumed.

Unit tests of how ``prepare_distributed`` fits a config to the machine (backend, SyncBN, DDP on
CPU), and an end-to-end run of the launcher users use, ``tools/dist_train.sh CONFIG 2`` and
``tools/dist_test.sh``, with 2 gloo processes on CPU on a tiny generated shapes dataset.
"""
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from mmvminet.runner_utils import finish_distributed, prepare_distributed, sync_bn_supported

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import check_multi_gpu  # noqa: E402
DET_CONFIG = osp.join(ROOT, 'configs', 'quickstart', 'mask_rcnn_vminet_ti_shapes.py')
SEG_CONFIG = osp.join(ROOT, 'configs', 'quickstart', 'upernet_vminet_ti_shapes.py')
NUM_VAL = 3  # odd: the sampler pads 2 processes to 4 samples, collection must drop the copy


@HOOKS.register_module(force=True)
class RecordRanksHook(Hook):
    """Test only: each process appends what it did to WORK_DIR/ranks_RANK.txt: ``save ITER``
    for every checkpoint it writes, ``test N`` for every test batch of N samples."""
    priority = 'LOWEST'

    def _record(self, runner, line):
        with open(osp.join(runner.work_dir, f'ranks_{runner.rank}.txt'), 'a') as f:
            f.write(line + '\n')

    def before_save_checkpoint(self, runner, checkpoint):
        self._record(runner, f'save {runner.iter}')

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self._record(runner, f'test {len(outputs)}')


def records(work_dir):
    """{rank: [line, ...]} of RecordRanksHook's files in ``work_dir``."""
    found = {}
    for name in os.listdir(work_dir):
        if name.startswith('ranks_'):
            with open(osp.join(work_dir, name)) as f:
                found[int(name[6:-4])] = f.read().split('\n')[:-1]
    return found


# ---- how a config is fitted to the machine -------------------------------------------------

def dist_config(**extra):
    return Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl')),
                       model=dict(type='M', backbone=dict(norm_cfg=dict(type='SyncBN')),
                                  heads=[dict(norm_cfg=dict(type='SyncBN'))]), **extra))


def test_single_process_config_is_left_alone():
    cfg = dist_config(sync_bn='torch')
    assert prepare_distributed(cfg, 'none', 'cpu') == []
    assert cfg.env_cfg.dist_cfg.backend == 'nccl' and cfg.sync_bn == 'torch'


def test_cpu_falls_back_to_gloo_without_syncbn_and_device_ids():
    cfg = dist_config(sync_bn='torch')
    notes = prepare_distributed(cfg, 'pytorch', 'cpu')
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert "backend='nccl' cannot run on cpu: using 'gloo'" in notes[0]
    assert 'sync_bn' not in cfg and 'SyncBN does not run on cpu' in notes[1]
    assert cfg.model.backbone.norm_cfg.type == 'BN' and cfg.model.heads[0].norm_cfg.type == 'BN'
    # DDP rejects device_ids for CPU modules; mmengine would pass [LOCAL_RANK]
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'


def test_gpu_keeps_nccl_and_syncbn():
    cfg = dist_config(sync_bn='torch')
    if torch.distributed.is_nccl_available():
        assert prepare_distributed(cfg, 'pytorch', 'cuda') == []
        assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    assert cfg.sync_bn == 'torch' and cfg.model.backbone.norm_cfg.type == 'SyncBN'
    assert 'model_wrapper_cfg' not in cfg


def test_usable_backend_is_kept_and_missing_one_chosen():
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='gloo', timeout=60))))
    assert prepare_distributed(cfg, 'pytorch', 'cuda') == []
    assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=60)
    cfg = Config(dict())
    assert prepare_distributed(cfg, 'pytorch', 'cpu') == []
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_own_model_wrapper_keeps_its_settings_on_cpu():
    cfg = Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel',
                                             find_unused_parameters=True)))
    prepare_distributed(cfg, 'pytorch', 'cpu')
    assert cfg.model_wrapper_cfg == dict(type='MMDistributedDataParallel',
                                         find_unused_parameters=True, device_ids=None)


def test_syncbn_needs_an_accelerator(tmp_path):
    """Why ``prepare_distributed`` drops SyncBN on CPU: torch's SyncBatchNorm raises there."""
    assert sync_bn_supported('cuda') and not sync_bn_supported('cpu')
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                                         rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match='SyncBatchNorm expected input tensor to be on GPU'):
            torch.nn.SyncBatchNorm(4).train()(torch.randn(2, 4, 3, 3))
    finally:
        torch.distributed.destroy_process_group()


def test_finish_distributed_tears_the_process_group_down(tmp_path):
    finish_distributed()  # none started: nothing to do
    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path}/store',
                                         rank=0, world_size=1)
    finish_distributed()
    assert not torch.distributed.is_initialized()


def test_finish_distributed_ends_the_process_with_everything_written(tmp_path):
    script = f"""
import logging, sys, torch.distributed as dist
from mmvminet.runner_utils import finish_distributed
finish_distributed(end_process=True)  # not distributed: returns
logging.basicConfig(filename={str(tmp_path / 'run.log')!r}, level=logging.INFO)
dist.init_process_group('gloo', init_method='file://{tmp_path}/store', rank=0, world_size=1)
logging.info('logged before the end')
sys.stdout.write('printed before the end')
finish_distributed(end_process=True)
print('not reached')
sys.exit(3)
"""
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == 'printed before the end'
    assert 'logged before the end' in (tmp_path / 'run.log').read_text()


# ---- 2 gloo processes through tools/dist_train.sh and tools/dist_test.sh ----------------------

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch(script, *args, timeout=300):
    """Run tools/SCRIPT with 2 processes; (exit status, stdout + stderr)."""
    env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1',
               PYTHONPATH=osp.join(ROOT, 'tests'))  # for custom_imports of this module
    env.pop('CUDA_VISIBLE_DEVICES', None)
    done = subprocess.run(['bash', osp.join(ROOT, 'tools', script), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout


# What the quickstart det config needs beyond --cfg-options: this module's hook, and a test
# pipeline with Resize (mmdet's mask head reads the scale_factor only Resize sets).
DET_OVERRIDES = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['mmvminet', 'test_distributed'], allow_failed_imports=False)
custom_hooks = [dict(type='RecordRanksHook')]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
'''
LOADER = ('batch_size=1', 'num_workers=0', 'persistent_workers=False')
# no classifier checkpoint in CI: random init; 2 epochs of 4 images = 2 iterations per process
DET_OPTIONS = ['model.backbone.init_cfg=None', 'train_cfg.max_epochs=2',
               'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=1',
               'default_hooks.checkpoint.max_keep_ckpts=2', 'default_hooks.logger.interval=1',
               *(f'{loader}.{option}' for loader in ('train_dataloader', 'val_dataloader',
                                                     'test_dataloader') for option in LOADER)]


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('dist')
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'data', 'make_shapes_dataset.py'),
                    '--out', str(root / 'shapes'), '--img-size', '64', '--num-train-cls', '5',
                    '--num-val-cls', '5', '--num-train-scenes', '4',
                    '--num-val-scenes', str(NUM_VAL)], check=True, stdout=subprocess.DEVNULL)
    config = root / 'det.py'
    config.write_text(DET_OVERRIDES.format(base=DET_CONFIG))
    return root, str(config)


@pytest.fixture(scope='module')
def det_trained(shapes):
    root, config = shapes
    work_dir = root / 'det_train'
    code, log = launch('dist_train.sh', config, '2', '--work-dir', str(work_dir),
                       '--cfg-options', f'data_root={root}/shapes/det', *DET_OPTIONS)
    return work_dir, code, log


def test_dist_train_runs_two_gloo_processes(det_trained):
    work_dir, code, log = det_trained
    assert code == 0, log[-5000:]
    assert 'distributed: launcher pytorch, world_size 2, backend gloo' in log
    assert "backend='nccl' cannot run on cpu: using 'gloo'" in log
    # 2 epochs of 2 iterations per process (4 images / 2 processes / batch 1): the sampler split
    assert 'Epoch(train) [2][2/2]' in log and 'Epoch(train) [1][3/' not in log
    assert 'coco/bbox_mAP' in log  # the validation after training ran and gathered


def test_dist_train_writes_each_checkpoint_once_from_rank_0(det_trained):
    work_dir, code, log = det_trained
    assert code == 0, log[-5000:]
    assert records(work_dir) == {0: ['save 2', 'save 4']}  # rank 1 saved nothing
    files = os.listdir(work_dir)
    assert sorted(f for f in files if f.endswith('.pth')) == ['epoch_1.pth', 'epoch_2.pth']
    assert not [f for f in files if f.endswith('.tmp')]


def test_dist_test_counts_each_val_image_once(shapes, det_trained):
    root, config = shapes
    train_dir, code, log = det_trained
    assert code == 0, log[-5000:]
    work_dir, out = root / 'det_test', root / 'det_test' / 'predictions.pkl'
    code, log = launch('dist_test.sh', config, str(train_dir / 'epoch_2.pth'), '2',
                       '--work-dir', str(work_dir), '--out', str(out),
                       '--cfg-options', f'data_root={root}/shapes/det', *DET_OPTIONS)
    assert code == 0, log[-5000:]
    assert 'world_size 2' in log
    # the sampler padded 3 images to 2 x 2: one image was predicted twice ...
    seen = {rank: [int(line.split()[1]) for line in lines]
            for rank, lines in records(work_dir).items()}
    assert sorted(sum(counts) for counts in seen.values()) == [2, 2]
    # ... and the gathered results hold each val image exactly once, in dataset order
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    with open(root / 'shapes' / 'det' / 'annotations' / 'instances_val.json') as f:
        val_ids = [image['id'] for image in json.load(f)['images']]
    assert len(val_ids) == NUM_VAL
    assert [p['img_id'] for p in predictions] == val_ids
    with open(work_dir / 'metrics.json') as f:
        assert 'coco/bbox_mAP' in json.load(f)


# ---- tools/analysis/check_multi_gpu.py: its reading and comparing ---------------------------

def write_scalars(work_dir, losses, times):
    folder = work_dir / '20260101_000000' / 'vis_data'
    folder.mkdir(parents=True)
    lines = [dict(lr=0.1, loss=loss, time=t, iter=i + 1, step=i + 1)
             for i, (loss, t) in enumerate(zip(losses, times))]
    lines.insert(2, {'coco/bbox_mAP': 0.5, 'step': 2})  # a validation line: not training
    (folder / 'scalars.json').write_text(''.join(json.dumps(line) + '\n' for line in lines))
    return work_dir


def test_check_reads_and_compares_loss_curves(tmp_path):
    single = check_multi_gpu.read_scalars(
        write_scalars(tmp_path / 'a', [2.0, 1.0, 1.0, 1.0], [9.0, 0.5, 0.5, 0.5]))
    multi = check_multi_gpu.read_scalars(
        write_scalars(tmp_path / 'b', [2.2, 0.8, 1.0, 1.1], [9.0, 0.25, 0.25, 0.25]))
    assert sorted(single) == [1, 2, 3, 4]
    result = check_multi_gpu.compare_losses(single, multi, window=2)
    assert result['iters'] == 4 and result['last_loss'] == [1.0, 1.1]
    assert result['per_iter']['max_abs'] == pytest.approx(0.2)
    assert result['per_iter']['max_rel'] == pytest.approx(0.2)
    assert result['per_iter']['mean_abs'] == pytest.approx(0.125)
    # windows (2.0, 1.0) vs (2.2, 0.8) and (1.0, 1.0) vs (1.0, 1.1): means 1.5/1.5, 1.0/1.05
    assert result['windowed']['mean_rel'] == pytest.approx(0.025)
    # warm-up is left out (half of a short run): 2 iterations of batch 8 in 0.5 s each
    assert check_multi_gpu.images_per_second(single, 8) == pytest.approx(16.0)
    assert check_multi_gpu.images_per_second(multi, 8) == pytest.approx(32.0)
    with pytest.raises(ValueError, match='different iterations'):
        check_multi_gpu.compare_losses(single, {1: multi[1]}, window=2)


def test_check_counts_predictions_and_checkpoints(tmp_path):
    ok = check_multi_gpu.count_predictions([{'img_path': p} for p in 'abc'], 3)
    assert ok == dict(dataset=3, predictions=3, unique=3, ok=True)
    assert not check_multi_gpu.count_predictions([{'img_path': p} for p in 'abca'], 3)['ok']
    assert not check_multi_gpu.count_predictions([{'img_path': p} for p in 'ab'], 3)['ok']
    (tmp_path / 'iter_8.pth').write_bytes(b'')
    log = 'Saving checkpoint at 8 iterations\n'
    assert check_multi_gpu.checkpoint_check(tmp_path, log, 8)['ok']
    assert not check_multi_gpu.checkpoint_check(tmp_path, log * 2, 8)['ok']
    (tmp_path / '.iter_8.pth.123.tmp').write_bytes(b'')
    assert not check_multi_gpu.checkpoint_check(tmp_path, log, 8)['ok']


@pytest.mark.slow
def test_check_multi_gpu_runs_on_cpu(shapes):
    """The whole script with 2 gloo processes: about 2 minutes on 2 cores."""
    root, _ = shapes
    out = root / 'check'
    done = subprocess.run([sys.executable, osp.join(ROOT, 'tools', 'analysis',
                                                    'check_multi_gpu.py'),
                           '--out-dir', str(out), '--iters', '6', '--window', '3',
                           '--data-root', str(root / 'shapes'), '--device', 'cpu',
                           '--batch', '2', '--loss-tol', '1'],
                          cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS='1'),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-5000:]
    with open(out / 'report.json') as f:
        report = json.load(f)
    for task in ('det', 'seg'):
        result = report['tasks'][task]
        assert result['evaluation']['predictions'] == result['evaluation']['unique'] == NUM_VAL
        assert result['checkpoint']['files'] == ['iter_6.pth']
        assert result['losses']['iters'] == 6
    assert '| det |' in (out / 'report.md').read_text()
