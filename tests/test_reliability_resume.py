"""Issue #8: a training process killed with SIGKILL and restarted with ``--resume`` ends with the
same weights as one never interrupted; checkpoints are never half-written; a corrupt last
checkpoint is reported with the previous one to resume from.
"""
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from test_reliability import ROOT, make_cls_data, write_cls_config

KILL_AT = 'MMVMINET_TEST_KILL_AT'


@HOOKS.register_module(force=True)
class KillAfterIterHook(Hook):
    """Test only: SIGKILL this process once iteration ``$MMVMINET_TEST_KILL_AT`` (1-based) is
    done and any checkpoint of it saved (lowest priority: after CheckpointHook)."""
    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if os.environ.get(KILL_AT) == str(runner.iter + 1):
            os.kill(os.getpid(), signal.SIGKILL)


def start_training(config, work_dir, *args, kill_at=None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([osp.join(ROOT, 'tests'), ROOT]),
               OMP_NUM_THREADS='1')  # the same threads in every run, as the test runs two at once
    env.pop(KILL_AT, None)
    if kill_at is not None:
        env[KILL_AT] = str(kill_at)
    return subprocess.Popen([sys.executable, osp.join(ROOT, 'tools', 'train.py'), config,
                             '--work-dir', str(work_dir), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


@pytest.fixture(scope='module')
def killed_and_uninterrupted(tmp_path_factory):
    """8 iterations (2 epochs of 4) with a checkpoint every 3: once straight through, once
    killed after iteration 7, its last checkpoint iter_6.pth being mid-epoch. Both run at
    once, on the two cores."""
    root = tmp_path_factory.mktemp('resume')
    config = write_cls_config(root / 'resume.py', make_cls_data(root / 'data'), iters=8,
                              interval=3, custom_hooks=[dict(type='KillAfterIterHook')],
                              imports=('mmvminet', 'test_reliability_resume'))
    straight = start_training(config, root / 'straight')
    killed = start_training(config, root / 'killed', kill_at=7)
    for process in (straight, killed):
        process.wait(timeout=300)
    assert straight.returncode == 0, straight.stderr.read()[-3000:]
    assert killed.returncode == -signal.SIGKILL, killed.stderr.read()[-3000:]
    return config, root


def test_killed_run_resumes_to_the_same_weights(killed_and_uninterrupted, tmp_path):
    config, root = killed_and_uninterrupted
    killed = tmp_path / 'killed'
    shutil.copytree(root / 'killed', killed)
    assert {f for f in os.listdir(killed) if f.endswith('.pth')} == {'iter_3.pth', 'iter_6.pth'}
    assert not [f for f in os.listdir(killed) if f.endswith('.tmp')]
    # the pointer names the copied folder's checkpoint as the original run wrote it: re-point it
    (killed / 'last_checkpoint').write_text(str(killed / 'iter_6.pth'))
    code, out, err = finish(start_training(config, killed, '--resume'))
    assert code == 0, err[-3000:]
    assert 'Advance dataloader 6 steps' in out + err  # mid-epoch: the loop replays the data
    expected = torch.load(root / 'straight' / 'iter_8.pth', weights_only=False)
    resumed = torch.load(killed / 'iter_8.pth', weights_only=False)
    for key, value in expected['state_dict'].items():
        assert torch.equal(value, resumed['state_dict'][key]), key
    assert 'rng_state' in resumed


def test_corrupt_last_checkpoint_offers_the_previous_one(killed_and_uninterrupted, tmp_path):
    config, root = killed_and_uninterrupted
    work_dir = tmp_path / 'killed'
    shutil.copytree(root / 'killed', work_dir)
    last = work_dir / 'iter_6.pth'
    (work_dir / 'last_checkpoint').write_text(str(last))
    data = last.read_bytes()
    last.write_bytes(data[:len(data) // 2])  # what a non-atomic save killed mid-write leaves
    code, _, err = finish(start_training(config, work_dir, '--resume'))
    assert code == 1 and 'Traceback' not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f'error: checkpoint {last} is corrupt (truncated?); resume from the previous one with '
        f'--resume {work_dir}/iter_3.pth')


def test_runner_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A save that dies mid-write leaves the previous file whole and no temporary behind."""
    import mmengine.hooks.checkpoint_hook as checkpoint_hook
    import mmengine.runner.runner as runner_module
    path = tmp_path / 'iter_2.pth'
    runner_module.save_checkpoint({'step': 1}, str(path))
    assert torch.load(path) == {'step': 1}

    def dies_mid_write(obj, f):
        f.write(b'PK\x03\x04 half a zip')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, 'save', dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        runner_module.save_checkpoint({'step': 2}, str(path))
    monkeypatch.undo()
    assert torch.load(path) == {'step': 1} and os.listdir(tmp_path) == ['iter_2.pth']

    pointer = tmp_path / 'last_checkpoint'
    with checkpoint_hook.open(str(pointer), 'w') as f:  # CheckpointHook's write, as patched
        f.write(str(path))
    with pytest.raises(KeyboardInterrupt):
        with checkpoint_hook.open(str(pointer), 'w') as f:
            f.write('/half/written')
            raise KeyboardInterrupt
    assert pointer.read_text() == str(path)
    assert sorted(os.listdir(tmp_path)) == ['iter_2.pth', 'last_checkpoint']


class SaveKilled(BaseException):
    """A stop that no tool handler catches, as SIGTERM/SIGKILL would be."""


def test_stop_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """mmengine's CheckpointHook removes its oldest kept checkpoint before writing the next: with
    max_keep_ckpts=1, a run stopped while saving iter_2 had nothing left to resume from (the
    H100 check_paper_configs run that started over). The oldest now goes once the new one is
    written; uninterrupted, only the newest is kept, as asked."""
    from test_reliability import run_tool, train_tool
    config = write_cls_config(tmp_path / 'keep1.py', make_cls_data(tmp_path / 'data'), iters=3,
                              interval=1)
    keep_one = ['default_hooks.checkpoint.max_keep_ckpts=1']
    straight = tmp_path / 'straight'
    assert run_tool(train_tool, config, '--work-dir', str(straight), options=keep_one) is None
    assert sorted(p.name for p in straight.glob('*.pth')) == ['iter_3.pth']
    hub = torch.load(straight / 'iter_3.pth', weights_only=False)['message_hub']
    assert hub['runtime_info']['keep_ckpt_ids'][-1] == 3

    saves = []
    torch_save = torch.save

    def killed_at_the_second_save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:
            raise SaveKilled
        torch_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', killed_at_the_second_save)
    stopped = tmp_path / 'stopped'
    with pytest.raises(SaveKilled):
        run_tool(train_tool, config, '--work-dir', str(stopped), options=keep_one)
    monkeypatch.undo()
    assert sorted(p.name for p in stopped.glob('*.pth')) == ['iter_1.pth']
    assert (stopped / 'last_checkpoint').read_text() == str(stopped / 'iter_1.pth')
    assert torch.load(stopped / 'iter_1.pth', weights_only=False)['meta']['iter'] == 1
