"""Cross-stage behaviour of `dpo-imdb run`: resume after kill -9, determinism, a rerun that recomputes nothing,
refusing a changed config, clear errors, and the `sweep` command."""
import hashlib, json, math, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from conftest import cli, finished_chunks, gpt2_alive_at
from dpo_imdb.config import from_preset, load_config, save_config
from dpo_imdb.pipeline import LOCK, STAGES
from dpo_imdb.training import _checkpoint_state              # the pipeline's test of a whole checkpoint

TIMEOUT = 600         # s, for any one `dpo-imdb` command of these tests (the slowest takes about a minute)

def _run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, stdin=subprocess.DEVNULL, timeout=TIMEOUT, **kwargs)

def _config(tmp_path, name='cfg.json', **overrides) -> Path:
    # slower generation than the plain test preset, in many small chunks, so that a kill lands mid-stage
    cfg = from_preset('test', n_train_prompts=96, max_new_tokens=16, chunk_prompts=4, gen_batch_size=8, **overrides)
    return save_config(cfg, tmp_path/name)

def _sha(path: Path) -> str: return hashlib.sha256(path.read_bytes()).hexdigest()

def _kill_when(cmd, ready, timeout=TIMEOUT):
    "Start `cmd`, SIGKILL it as soon as `ready()` is true; return whether it was killed mid-way."
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    t0 = time.time()
    try:
        while proc.poll() is None and time.time() - t0 < timeout:
            if ready(): proc.send_signal(signal.SIGKILL); proc.wait(timeout=60); return True
            time.sleep(0.02)
    finally:
        if proc.poll() is None: proc.kill()
        proc.wait(timeout=60)
    return False

def _complete_checkpoints(train_dir: Path) -> list[int]:
    """Steps of the checkpoints the Trainer finished writing: trainer_state.json is its last file, and it is written in
    place, so a kill can leave it half-written (the pipeline then resumes from the checkpoint before, and so must this)."""
    states = (train_dir/'checkpoints').glob('checkpoint-*/trainer_state.json')
    return sorted(int(p.parent.name.split('-')[-1]) for p in states if _checkpoint_state(p.parent) is not None)

def _sessions(train_dir: Path) -> list[dict]:
    return [json.loads(l) for l in (train_dir/'sessions.jsonl').read_text().splitlines()]

def _weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(model_dir/'model.safetensors'))

def assert_same_weights(a: Path, b: Path):
    import torch
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert different == [], f'{len(different)} tensors differ, e.g. {different[:3]}'

@pytest.mark.slow
@pytest.mark.parametrize('stage', ['generate', 'score', 'train'])
def test_kill_mid_stage_then_resume_gives_the_same_result(tmp_path, stage):
    # for `train`: 12 steps, a checkpoint every 4, so the kill lands with training well under way but not finished
    cfg = _config(tmp_path, **(dict(max_steps=12, save_steps=4, eval_steps=4) if stage == 'train' else {}))
    clean, killed = tmp_path/'clean', tmp_path/'killed'
    assert _run(cli('run', '--config', str(cfg), '--out', str(clean))).returncode == 0
    def mid_stage():
        d = killed/stage
        started = bool(finished_chunks(d/'chunks')) if stage != 'train' else bool(_complete_checkpoints(d))
        return started and not (d/'manifest.json').exists()
    assert _kill_when(cli('run', '--config', str(cfg), '--out', str(killed)), mid_stage), f'the run never got into {stage}'
    assert not (killed/stage/'manifest.json').exists()
    at_kill = _complete_checkpoints(killed/'train') if (killed/'train').exists() else []
    res = _run(cli('run', '--config', str(cfg), '--out', str(killed)), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    if stage != 'train':                                 # it went on from the chunks it had, not from the start
        kept = re.search(rf'dpo-imdb: {stage}: ([\d,]+) of [\d,]+ \w+ done earlier: reusing their chunks', res.stdout)
        assert kept and int(kept.group(1).replace(',', '')) > 0, res.stdout[-3000:]
    assert _sha(killed/'triplets'/'triplets.jsonl') == _sha(clean/'triplets'/'triplets.jsonl')
    assert (killed/'evaluate'/'metrics.json').read_text() == (clean/'evaluate'/'metrics.json').read_text()
    if stage == 'train':
        total = json.loads((clean/'train'/'manifest.json').read_text())['counts']['global_step']
        assert total == 12 and 0 < at_kill[-1] < total, (at_kill, total)
        full = [s for s in _sessions(clean/'train') if s['event'] == 'finish']
        assert [(s['first_step'], s['last_step'], s['optimizer_steps']) for s in full] == [(1, total, total)]
        sessions = _sessions(killed/'train')
        starts = [s for s in sessions if s['event'] == 'start']
        finishes = {s['session']: s for s in sessions if s['event'] == 'finish'}
        assert starts[0]['resumed_from_step'] == 0 and starts[0]['session'] not in finishes      # the killed session
        resumed = starts[-1]
        assert (resumed['resumed_from_step'], resumed['checkpoint']) == (at_kill[-1], f'checkpoint-{at_kill[-1]}')
        done = finishes[resumed['session']]
        assert done['first_step'] == at_kill[-1] + 1 and done['last_step'] == total       # it went on from there ...
        assert done['optimizer_steps'] == total - at_kill[-1] < total                     # ... and did not start over
        assert_same_weights(killed/'train'/'model', clean/'train'/'model')              # and ended where a clean run ends
        hist = lambda d: [[r.get(k, float('nan')) for k in ('step', 'loss', 'rewards/accuracies', 'eval_loss')]
                          for r in json.loads((d/'train'/'history.json').read_text())]
        np.testing.assert_allclose(hist(killed), hist(clean), rtol=0, atol=1e-6)   # same metrics history

def _metrics_history(run: Path) -> list[dict]:
    "The training history without its wall-clock fields (runtime, samples/steps per second), which differ run to run."
    timing = re.compile(r'(^|_)(runtime|samples_per_second|steps_per_second)$')
    return [{k: v for k, v in r.items() if not timing.search(k)} for r in json.loads((run/'train'/'history.json').read_text())]

@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
    "The same config run twice into two directories, `a` and `b`."
    d = tmp_path_factory.mktemp('two_runs')
    cfg = _config(d)
    for out in ('a', 'b'):
        res = _run(cli('run', '--config', str(cfg), '--out', str(d/out)), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    return cfg, d/'a', d/'b'

@pytest.mark.slow
def test_same_seed_twice_is_identical(two_runs):
    _, a, b = two_runs
    assert _sha(a/'triplets'/'triplets.jsonl') == _sha(b/'triplets'/'triplets.jsonl')
    for f in sorted((a/'triplets'/'dataset').glob('*.arrow')):
        assert _sha(f) == _sha(b/'triplets'/'dataset'/f.name)
    assert _metrics_history(a) == _metrics_history(b)
    assert_same_weights(a/'train'/'model', b/'train'/'model')
    assert (a/'evaluate'/'metrics.json').read_text() == (b/'evaluate'/'metrics.json').read_text()

def _events(run: Path) -> list[tuple[str, str]]:
    return [(e['stage'], e['event']) for e in map(json.loads, (run/'stages.jsonl').read_text().splitlines())]

@pytest.mark.slow
def test_rerun_of_a_finished_run_recomputes_nothing(two_runs, tmp_path):
    cfg, a, _ = two_runs
    run = tmp_path/'run'
    shutil.copytree(a, run)
    card = run/'train'/'model'/'README.md'                  # its loading example names the model's folder: the copy's
    card.write_text(card.read_text().replace(str(a), str(run)))
    assert _events(run) == [(s, e) for s in STAGES for e in ('start', 'finish')]       # the first run did every stage
    artifacts = {p: (p.stat().st_mtime_ns, _sha(p)) for p in run.rglob('*') if p.is_file()        # the lock holds a pid
                 and p.name not in ('stages.jsonl', 'report.md', LOCK) and 'wandb' not in p.parts}
    res = _run(cli('run', '--config', str(cfg), '--out', str(run)), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    rerun = _events(run)[2 * len(STAGES):]
    assert rerun == [(s, 'reuse') for s in STAGES], rerun                              # no stage started again ...
    changed = [str(p.relative_to(run)) for p, (mtime, sha) in artifacts.items()
               if not p.exists() or p.stat().st_mtime_ns != mtime or _sha(p) != sha]
    assert changed == []                                                               # ... and no artifact was rewritten

def test_changed_config_is_refused_unless_force(tmp_path):
    out = tmp_path/'run'
    assert _run(cli('prompts', '--preset', 'test', '--out', str(out))).returncode == 0
    changed = save_config(from_preset('test', beta=0.3), tmp_path/'changed.json')
    res = _run(cli('prompts', '--config', str(changed), '--out', str(out)), capture_output=True, text=True)
    assert res.returncode == 2 and 'different config' in res.stderr and '--force' in res.stderr
    assert 'Traceback' not in res.stderr
    res = _run(cli('prompts', '--config', str(changed), '--out', str(out), '--force'), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr

def test_a_folder_with_no_finished_stage_takes_a_changed_config(tmp_path):
    "A run stopped before any stage finished (its config.json written, nothing kept) is no run to protect: no --force."
    out = tmp_path/'run'
    out.mkdir(); save_config(from_preset('test', out_dir=str(out)), out/'config.json')
    (out/'setup').mkdir(); (out/'setup'/'scratch').write_text('left by the stopped run')   # unfinished: no manifest
    res = _run(cli('prompts', '--preset', 'test', '--beta', '0.3', '--out', str(out)), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert load_config(out/'config.json').beta == 0.3 and not (out/'setup'/'scratch').exists()

NOBODY = 65534

def _as_nobody(args: list[str], writable: Path, env: dict) -> list[str]:
    """`args` run as the unprivileged user nobody (uid/gid 65534, no groups), for tests that run as root.

    A probe first checks that nobody can import the package and write into the world-writable folder `writable`. When
    the interpreter, the package or the test's temporary folder sits under a folder nobody may not enter (pyenv under
    /root and pytest's /tmp/pytest-of-root are mode 700), the process keeps CAP_DAC_READ_SEARCH: it may then read and
    traverse any folder, but still write only where permissions allow it -- which is what the tests are about."""
    drop = ['setpriv', f'--reuid={NOBODY}', f'--regid={NOBODY}', '--clear-groups']
    probe = [sys.executable, '-c', f'import dpo_imdb.cli, torch, transformers; open({str(writable/"probe")!r}, "w").write("x")']
    for extra in ([], ['--inh-caps=+dac_read_search', '--ambient-caps=+dac_read_search']):
        res = subprocess.run(drop + extra + probe, capture_output=True, text=True, timeout=TIMEOUT, env=env)
        if res.returncode == 0: return drop + extra + args
    pytest.fail(f'cannot run the package as user nobody, even with CAP_DAC_READ_SEARCH: {res.stderr[-1000:]}')

def test_force_keeps_the_stages_a_change_does_not_touch(tmp_path):
    out = tmp_path/'run'
    assert _run(cli('triplets', '--preset', 'test', '--out', str(out))).returncode == 0
    before = {s: _sha(out/s/'manifest.json') for s in ('setup', 'prompts', 'generate', 'score', 'triplets')}
    res = _run(cli('triplets', '--preset', 'test', '--top_k', '5', '--out', str(out)), capture_output=True, text=True)
    assert res.returncode == 2 and ('rerun with --force to redo generate, score, triplets, train and evaluate (keeping '
                                    'setup and prompts)') in res.stderr, res.stderr
    res = _run(cli('triplets', '--preset', 'test', '--top_k', '5', '--out', str(out), '--force'), capture_output=True,
               text=True)
    assert res.returncode == 0, res.stderr
    after = {s: _sha(out/s/'manifest.json') for s in before}
    assert [s for s in before if before[s] == after[s]] == ['setup', 'prompts']     # kept as they were; the rest redone
    assert json.loads((out/'config.json').read_text())['top_k'] == 5

def test_a_smaller_score_batch_keeps_the_setup_and_scores_in_it(tmp_path):
    """The advice after an out-of-memory error in scoring halves --score_batch_size: --force then keeps the setup (its
    SFT model and trained scorer), the prompts and the samples, and the classifier scores in the smaller batches."""
    from dataclasses import replace
    import dpo_imdb.pipeline as pipeline
    cfg = from_preset('test', out_dir=str(tmp_path/'run'), scorer='tiny-distilbert')
    pipeline.run_pipeline(cfg, stop_after='score', progress=False)
    done = ('setup', 'prompts', 'generate', 'score')
    before = {s: _sha(tmp_path/'run'/s/'manifest.json') for s in done}
    smaller = replace(cfg, score_batch_size=cfg.score_batch_size // 2)
    run = pipeline.run_pipeline(smaller, force=True, stop_after='score', progress=False)
    assert [s for s in done if _sha(tmp_path/'run'/s/'manifest.json') == before[s]] == ['setup', 'prompts', 'generate']
    assert pipeline.setup_models(smaller, run).scorer.batch_size == smaller.score_batch_size == 32

@pytest.mark.parametrize('overrides', [{}, dict(scorer='tiny-distilbert', ref_logps='model', pairing='all_pairs',
                                               score_target='prompt+completion', loss_type='ipo')])
def test_no_stage_reads_a_field_that_a_later_stage_owns(tmp_path, monkeypatch, overrides):
    """`STAGE_FIELDS` (`00_config`) places each config field at the first stage that reads it, and `--force` keeps the
    finished stages before the first one whose fields changed. A field that an earlier stage reads too would let
    `--force` keep an artifact the change alters. The `test` preset runs end to end -- as it is, then with a trained
    DistilBERT scorer, a reference model in training and other pairs, targets and loss -- with every read of a field
    recorded with the stage then running (between a stage's start and its manifest, and `load_reviews`, whose reviews
    the setup and the prompts share). Not the stage's own: reads by `dataclasses` and `dpo_imdb.config` (copying,
    hashing, validating a config) and by the `_check_` functions, which refuse a run early and make nothing (the setup
    checks that prompts and completions fit the model's context)."""
    import dataclasses
    import dpo_imdb.pipeline as pipeline
    from dpo_imdb.config import RunConfig, STAGE_FIELDS
    names, order = {f.name for f in dataclasses.fields(RunConfig)}, list(STAGE_FIELDS)
    owner = {**{name: 'setup' for name in names}, **{n: s for s, fields in STAGE_FIELDS.items() for n in fields}}
    running, reads = [None], set()
    get = RunConfig.__getattribute__
    def recording(self, name):
        caller = sys._getframe(1)
        if name in names and running[0] and not caller.f_code.co_name.startswith('_check') and \
                caller.f_globals.get('__name__') not in ('dataclasses', 'dpo_imdb.config'):
            reads.add((running[0], name))
        return get(self, name)
    reuse, finish, load_reviews = pipeline.RunDir.reuse, pipeline.RunDir.finish, pipeline.load_reviews
    def reuse_(self, stage):
        done = reuse(self, stage); running[0] = None if done else stage; return done
    def finish_(self, stage, started, **counts):
        try: return finish(self, stage, started, **counts)
        finally: running[0] = None
    def load_reviews_(cfg):
        running[0] = 'setup'
        try: return load_reviews(cfg)
        finally: running[0] = None
    monkeypatch.setattr(pipeline.RunDir, 'reuse', reuse_)
    monkeypatch.setattr(pipeline.RunDir, 'finish', finish_)
    monkeypatch.setattr(pipeline, 'load_reviews', load_reviews_)
    monkeypatch.setattr(RunConfig, '__getattribute__', recording)
    pipeline.run_pipeline(from_preset('test', out_dir=str(tmp_path/'run'), **overrides), progress=False)
    monkeypatch.undo()
    assert {stage for stage, _ in reads} == set(order), reads                   # every stage ran and read its fields
    late = sorted((stage, name, owner[name]) for stage, name in reads if order.index(owner[name]) > order.index(stage))
    assert late == [], f'(stage, field it reads, the later stage STAGE_FIELDS gives it): {late}'

def test_read_only_output_dir_is_a_clear_error(tmp_path):
    "Runs as a non-root user (root ignores directory permissions), so it runs in CI, where tests run as root."
    ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o555)
    home = tmp_path/'home'; home.mkdir(); home.chmod(0o777)
    args = cli('prompts', '--preset', 'test', '--out', str(ro/'run'))
    env = {**os.environ, 'HOME': str(home), 'MPLCONFIGDIR': str(home/'mpl'), 'HF_HOME': str(home/'hf'),
           'PYTHONPATH': os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get('PYTHONPATH', '')])}
    if os.geteuid() == 0: args = _as_nobody(args, home, env)
    res = _run(args, capture_output=True, text=True, env=env)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert f'cannot write {ro/"run"}: Permission denied' in res.stderr, res.stderr[-2000:]
    assert 'Traceback' not in res.stderr
    assert list(ro.iterdir()) == []

def test_missing_data_path_is_a_clear_error(tmp_path):
    res = _run(cli('prompts', '--preset', 'test', '--data', str(tmp_path/'nope'), '--out', str(tmp_path/'run')),
               capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert str(tmp_path/'nope') in res.stderr and 'Traceback' not in res.stderr

@pytest.mark.slow
def test_sweep_command_trains_one_policy_per_beta_and_plots_the_frontier(tmp_path):
    out = tmp_path/'run'
    res = _run(cli('sweep', '--preset', 'test', '--out', str(out)), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    betas = list(from_preset('test').betas_sweep)
    points = json.loads((out/'sweep'/'points.json').read_text())
    assert [p['beta'] for p in points] == betas
    assert all(f'dpo-imdb: sweep: beta {b:g} ({i} of {len(betas)})' in res.stdout for i, b in enumerate(betas, 1))
    end = res.stdout[res.stdout.index('dpo-imdb: sweep finished in '):]                    # it ends with a table
    assert all(f"{p['beta']:>6g}  {p['policy/pos_prob']:>20.3f}  {p['win_rate']:>8.1%}" in end for p in points), end
    assert end.rstrip().endswith(f"points  {out/'sweep'/'points.json'}"), end
    for p in points:
        sub = out/'sweep'/f"beta-{p['beta']:g}"
        assert json.loads((sub/'config.json').read_text())['beta'] == p['beta']           # trained at its own beta
        assert {k: v for k, v in p.items() if k != 'beta'} == json.loads((sub/'evaluate'/'metrics.json').read_text())
        assert {'kl', 'policy/pos_prob', 'reference/pos_prob', 'win_rate'} <= p.keys()
    assert not (out/'train').exists() and not (out/'evaluate').exists()                  # only the sweep trained
    weights = [_weights(out/'sweep'/f'beta-{b:g}'/'train'/'model') for b in betas]
    assert any(not np.array_equal(weights[0][k].numpy(), weights[1][k].numpy()) for k in weights[0])
    png = (out/'sweep'/'frontier.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000
    report = (out/'report.md').read_text()
    assert '## Reward vs KL' in report and '![frontier](sweep/frontier.png)' in report

def test_data_without_a_labelled_test_split_is_refused(tmp_path):
    "The independent scorer must be fitted on reviews the training scorer never saw: no labelled test split, no run."
    import pandas as pd
    from dpo_imdb.synthetic import synthetic_reviews
    data = tmp_path/'data'; data.mkdir()
    pd.DataFrame(synthetic_reviews(300)).to_parquet(data/'train.parquet')          # a labelled train split only
    res = subprocess.run(cli('prompts', '--preset', 'test', '--data', str(data), '--out', str(tmp_path/'run')),
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 2, res.stderr[-2000:]
    assert 'no labelled test split' in res.stderr and 'independent scorer' in res.stderr and 'Traceback' not in res.stderr
    assert not (tmp_path/'run'/'setup'/'manifest.json').exists()

@pytest.mark.slow
def test_bf16_run_evaluates_the_same_policy_in_the_training_process_or_a_new_one(tmp_path):
    """One precision, and a plain model for evaluation: a bf16 run that evaluates right after training in the same
    process reports exactly what a run whose evaluation starts in a new process, from the saved model, reports."""
    cfg = save_config(from_preset('test', precision='bf16'), tmp_path/'cfg.json')
    straight, split = tmp_path/'straight', tmp_path/'split'
    assert _run(cli('run', '--config', str(cfg), '--out', str(straight))).returncode == 0
    assert _run(cli('train', '--config', str(cfg), '--out', str(split))).returncode == 0       # stops after training
    assert not (split/'evaluate').exists()
    assert _run(cli('evaluate', '--config', str(cfg), '--out', str(split))).returncode == 0    # a new process
    setup = json.loads((split/'setup'/'manifest.json').read_text())['counts']
    assert setup['precision'] == 'torch.bfloat16'
    assert (split/'evaluate'/'metrics.json').read_text() == (straight/'evaluate'/'metrics.json').read_text()

def _setup(tmp_path, name: str, monkeypatch, beside_sft: bool):
    "Stage setup of the test preset, its TF-IDF scorers fitted beside SFT (as on a GPU) or in line (as on a CPU)."
    import dpo_imdb.pipeline as pipeline
    monkeypatch.setattr(pipeline, '_fit_in_background', lambda device: beside_sft)
    cfg = from_preset('test', out_dir=str(tmp_path/name))
    run = pipeline.run_pipeline(cfg, stop_after='setup', progress=False)
    return run, pipeline.setup_models(cfg, run)

def test_scorers_fitted_beside_sft_are_the_scorers_fitted_in_line(tmp_path, monkeypatch):
    line_run, line = _setup(tmp_path, 'in_line', monkeypatch, False)
    bg_run, bg = _setup(tmp_path, 'beside_sft', monkeypatch, True)
    counts = bg_run.manifest('setup')['counts']
    assert counts['fitted_beside_sft'] == ['independent_scorer', 'scorer'] and math.isfinite(counts['waited_for_them_seconds'])
    assert 'fitted_beside_sft' not in line_run.manifest('setup')['counts']
    assert not (bg_run.root/'setup.scorers').exists()                       # the background's files are gone
    cards = lambda run: json.loads((run.path('setup')/'scorers.json').read_text())
    assert cards(bg_run) == cards(line_run)
    texts = ['A wonderful, moving film.', 'Dull and far too long.', 'It was a film.']
    for role in ('scorer', 'independent_scorer'):
        assert np.array_equal(getattr(bg, role)(texts).probs, getattr(line, role)(texts).probs)

def test_a_background_fit_that_fails_is_done_again_in_line(tmp_path, monkeypatch):
    import dpo_imdb.pipeline as pipeline
    def broken(*args): raise RuntimeError('the background fit broke')
    monkeypatch.setattr(pipeline, '_fit_tfidf', broken)
    run, models = _setup(tmp_path, 'broken', monkeypatch, True)
    assert run.manifest('setup')['counts']['fitted_beside_sft'] == []
    assert models.scorer(['A wonderful film.']).probs.shape == (1,)

def test_a_background_fit_that_hangs_is_stopped_and_done_again_in_line(tmp_path, monkeypatch):
    import dpo_imdb.pipeline as pipeline
    def hangs(*args): time.sleep(3600)
    monkeypatch.setattr(pipeline, '_fit_tfidf', hangs)
    monkeypatch.setattr(pipeline, 'BACKGROUND_WAIT', 1)
    started = time.time()
    with pytest.warns(UserWarning, match='not done 1 s after it'):
        run, models = _setup(tmp_path, 'hangs', monkeypatch, True)
    assert time.time() - started < 600                                       # not the hour the process would take
    assert run.manifest('setup')['counts']['fitted_beside_sft'] == []
    assert not (run.root/'setup.scorers').exists()                          # stopped, its folder removed
    assert models.scorer(['A wonderful film.']).probs.shape == (1,)

def test_the_trained_copy_is_freed_before_evaluation(tmp_path, monkeypatch):
    """trl binds the forward of the model it trains to that model, a reference cycle that outlives the trainer until
    Python's next collection: `run_train` collects it, so that evaluation (on a GPU: its sampler's KV caches) does not
    run beside a dead policy's weights. At evaluation only the reference and the trained policy, loaded back, are alive."""
    import dpo_imdb.pipeline as pipeline
    cfg = from_preset('test', out_dir=str(tmp_path/'run'))
    before, seen = gpt2_alive_at(monkeypatch, pipeline, 'run_evaluate', lambda: pipeline.run_pipeline(cfg, progress=False))
    assert [n - before for n in seen] == [2], seen


def test_a_manifests_peak_memory_is_its_own_process_not_its_parents():
    """`peak_rss_mb` (each manifest's `peak_rss_mb`) is the process's own peak: a `dpo-imdb` started by a process holding
    2 GiB (a notebook's kernel) reports what it used, where `ru_maxrss` carries the parent's memory over fork and exec."""
    held = bytearray(b'\x01') * (2 * 2**30)                 # 2 GiB, written: resident in this process
    code = ('import resource; from dpo_imdb.pipeline import peak_rss_mb; '
            "print('peaks', peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    out = _run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    ours, rusage = map(float, re.search(r'^peaks (\S+) (\S+)$', out, re.M).groups())
    del held
    assert rusage > 2048, f'ru_maxrss {rusage:.0f} MiB: this kernel does not carry the parent over, the check means nothing'
    assert ours < 1536, f'peak_rss_mb {ours:.0f} MiB in a child that imports the package alone (about 520 MiB)'
