"""Cross-stage behaviour of `dpo-imdb run`: resume after kill -9, determinism, refusing a changed config, clear errors."""
import hashlib, json, os, re, signal, subprocess, time
from dataclasses import replace
from pathlib import Path
import numpy as np
import pytest
from conftest import cli
from dpo_imdb.config import from_preset, save_config

def _config(tmp_path, name='cfg.json', **overrides) -> Path:
    # slower generation than the plain test preset, in many small chunks, so that a kill lands mid-stage
    cfg = from_preset('test', n_train_prompts=96, max_new_tokens=16, chunk_prompts=4, gen_batch_size=8, **overrides)
    return save_config(cfg, tmp_path/name)

def _sha(path: Path) -> str: return hashlib.sha256(path.read_bytes()).hexdigest()

def _kill_when(cmd, ready, timeout=300):
    "Start `cmd`, SIGKILL it as soon as `ready()` is true; return whether it was killed mid-way."
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if ready(): proc.send_signal(signal.SIGKILL); proc.wait(); return True
        time.sleep(0.02)
    proc.wait()
    return False

@pytest.mark.slow
@pytest.mark.parametrize('stage', ['generate', 'score', 'train'])
def test_kill_mid_stage_then_resume_gives_the_same_result(tmp_path, stage):
    cfg = _config(tmp_path)
    clean, killed = tmp_path/'clean', tmp_path/'killed'
    assert subprocess.run(cli('run', '--config', str(cfg), '--out', str(clean))).returncode == 0
    def mid_stage():
        d = killed/stage
        started = any((d/'chunks').glob('*/dataset_info.json')) if stage != 'train' else any(d.glob('checkpoints/checkpoint-*/model.safetensors'))
        return started and not (d/'manifest.json').exists()
    assert _kill_when(cli('run', '--config', str(cfg), '--out', str(killed)), mid_stage), f'the run never got into {stage}'
    assert not (killed/stage/'manifest.json').exists()
    assert subprocess.run(cli('run', '--config', str(cfg), '--out', str(killed))).returncode == 0
    assert _sha(killed/'triplets'/'triplets.jsonl') == _sha(clean/'triplets'/'triplets.jsonl')
    if stage == 'train':
        hist = lambda d: [[r.get(k, float('nan')) for k in ('step', 'loss', 'rewards/accuracies', 'eval_loss')]
                          for r in json.loads((d/'train'/'history.json').read_text())]
        assert json.loads((killed/'train'/'manifest.json').read_text())['counts']['global_step'] == \
               json.loads((clean/'train'/'manifest.json').read_text())['counts']['global_step']
        np.testing.assert_allclose(hist(killed), hist(clean), rtol=0, atol=1e-6)   # same metrics history

def _metrics_history(run: Path) -> list[dict]:
    "The training history without its wall-clock fields (runtime, samples/steps per second), which differ run to run."
    timing = re.compile(r'(^|_)(runtime|samples_per_second|steps_per_second)$')
    return [{k: v for k, v in r.items() if not timing.search(k)} for r in json.loads((run/'train'/'history.json').read_text())]

@pytest.mark.slow
def test_same_seed_twice_is_identical(tmp_path):
    cfg = _config(tmp_path)
    for out in ('a', 'b'):
        assert subprocess.run(cli('run', '--config', str(cfg), '--out', str(tmp_path/out))).returncode == 0
    a, b = tmp_path/'a', tmp_path/'b'
    assert _sha(a/'triplets'/'triplets.jsonl') == _sha(b/'triplets'/'triplets.jsonl')
    for f in sorted((a/'triplets'/'dataset').glob('*.arrow')):
        assert _sha(f) == _sha(b/'triplets'/'dataset'/f.name)
    assert _metrics_history(a) == _metrics_history(b)
    assert (a/'evaluate'/'metrics.json').read_text() == (b/'evaluate'/'metrics.json').read_text()

def test_changed_config_is_refused_unless_force(tmp_path):
    out = tmp_path/'run'
    assert subprocess.run(cli('prompts', '--preset', 'test', '--out', str(out))).returncode == 0
    changed = save_config(from_preset('test', beta=0.3), tmp_path/'changed.json')
    res = subprocess.run(cli('prompts', '--config', str(changed), '--out', str(out)), capture_output=True, text=True)
    assert res.returncode == 2 and 'different config' in res.stderr and '--force' in res.stderr
    assert 'Traceback' not in res.stderr
    res = subprocess.run(cli('prompts', '--config', str(changed), '--out', str(out), '--force'), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

def test_read_only_output_dir_is_a_clear_error(tmp_path):
    if os.geteuid() == 0: pytest.skip('root ignores directory permissions; the disk-full case covers this path')
    ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o500)
    res = subprocess.run(cli('prompts', '--preset', 'test', '--out', str(ro/'run')), capture_output=True, text=True)
    assert res.returncode == 2 and 'cannot write' in res.stderr

def test_missing_data_path_is_a_clear_error(tmp_path):
    res = subprocess.run(cli('prompts', '--preset', 'test', '--data', str(tmp_path/'nope'), '--out', str(tmp_path/'run')),
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert str(tmp_path/'nope') in res.stderr and 'Traceback' not in res.stderr
