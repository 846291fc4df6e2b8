"""`dpo-imdb frontier`: every method trained and evaluated at several settings and checkpoints, the DPO paper's Figure 2.

The `test` preset asks for 2 methods (DPO and online RL) at 2 settings each, evaluated at 2 checkpoints; the test
runs the command and checks the points file and the plot. A bad method name or an empty setting list must give one
line and exit status 2.
"""
import json, re, struct, subprocess
from collections import defaultdict
import pytest
from conftest import cli, gpt2_alive_at
from dpo_imdb.config import from_preset, save_config

FIELDS = {'method', 'setting', 'run', 'step', 'kl', 'reward', 'independent_reward', 'distinct_2'}

def _png_size(path) -> tuple[int, int]:
    "Width and height of a PNG, from its IHDR chunk."
    head = path.read_bytes()[:24]
    assert head[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG file'
    return struct.unpack('>II', head[16:24])

@pytest.mark.slow
def test_frontier_test_preset(tmp_path):
    out = tmp_path/'run'
    res = subprocess.run(cli('frontier', '--preset', 'test', '--out', str(out)), capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    points = json.loads((out/'frontier'/'points.json').read_text())
    assert all(FIELDS <= set(p) for p in points), [sorted(set(p)) for p in points][:2]
    runs = defaultdict(list)
    for p in points: runs[(p['method'], p['setting'])].append(p['step'])
    settings = defaultdict(set)
    for method, setting in runs: settings[method].add(setting)
    assert set(settings) == {'reference', 'dpo', 'rloo'}, dict(settings)
    assert settings['dpo'] == {'beta=0.1', 'beta=0.5'} and settings['rloo'] == {'kl_coef=0.05', 'kl_coef=0.2'}
    for (method, setting), steps in runs.items():
        assert sorted(steps) == ([0] if method == 'reference' else [2, 4]), (method, setting, steps)
    reference = next(p for p in points if p['method'] == 'reference')
    assert abs(reference['kl']) < 1e-6
    assert all(p['kl'] >= 0 and 0 <= p['reward'] <= 1 and 0 <= p['independent_reward'] <= 1 for p in points)
    assert any(p['kl'] > 1e-3 for p in points if p['method'] == 'dpo')   # training moved the policy
    width, height = _png_size(out/'frontier'/'frontier.png')
    assert width > 2 * height, (width, height)                          # two panels side by side
    assert (out/'frontier'/'frontier.png').stat().st_size > 20_000
    assert 'DPO' in (out/'frontier'/'table.md').read_text()
    summary = json.loads((out/'frontier'/'summary.json').read_text())
    assert summary['checkpoints'] == [2, 4] and summary['runs'] == 5
    assert 'frontier/frontier.png' in (out/'report.md').read_text()
    # a run's points depend on its own settings and seed, not on the runs before it: the methods' order changes nothing
    reordered = save_config(from_preset('test', frontier_methods=['rloo', 'dpo']), tmp_path/'reordered.json')
    res = subprocess.run(cli('frontier', '--config', str(reordered), '--out', str(tmp_path/'reordered')),
                         capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    again = json.loads((tmp_path/'reordered'/'frontier'/'points.json').read_text())
    assert [p['method'] for p in again][1] == 'rloo'                      # after the reference: rloo's runs first
    measure = lambda ps: sorted((p['run'], p['step'], p['kl'], p['reward'], p['independent_reward']) for p in ps)
    assert measure(again) == measure(points)

@pytest.mark.parametrize('change, message', [
    ({'frontier_methods': ['dpo', 'ppo']}, "--frontier_methods has an unknown method 'ppo': choose from dpo, "),
    ({'frontier_betas': []}, "--frontier_betas is empty, but frontier_methods includes 'dpo'"),
    ({'frontier_rl_betas': []}, "--frontier_rl_betas is empty, but frontier_methods includes 'rloo'"),
])
def test_frontier_bad_settings(tmp_path, change, message):
    config = save_config(from_preset('test', out_dir=str(tmp_path/'run'), **change), tmp_path/'config.json')
    res = subprocess.run(cli('frontier', '--config', str(config)), capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('dpo-imdb: error: ' + message), res.stderr
    assert 'Traceback' not in res.stderr and not (tmp_path/'run').exists()   # refused before any work

def test_each_trained_policy_is_freed_before_the_next_run(tmp_path, monkeypatch):
    """trl binds the forward of the model it trains to that model, a reference cycle that outlives the run until Python's
    next collection: the frontier collects it after each run, so that on a GPU the runs' dead policies (and their
    sampler's KV caches) do not pile up: as many models are alive when the second run starts as when the first did."""
    import dpo_imdb.frontier as frontier
    cfg = from_preset('test', out_dir=str(tmp_path/'run'), frontier_methods=['dpo'], frontier_betas=[0.1, 0.5])
    _, seen = gpt2_alive_at(monkeypatch, frontier, 'train_offline', lambda: frontier.run_frontier(cfg, progress=False))
    assert len(seen) == 2 and seen[1] == seen[0], seen

# "0.716 under the training scorer at KL 24.9", "IPO (0.699 at 5.7)": a reward and the KL it was measured at
QUOTED_POINT = re.compile(r'(0\.\d{3})\)?[^0-9]{0,45}?\bat (?:KL )?(\d+\.\d+)')

def _is_a_point(points: list[dict], reward: str, kl: str) -> bool:
    "Whether some point has this KL (to the digits quoted) and this reward, under either scorer (to 3 digits)."
    digits = len(kl.split('.')[1])
    return any(round(p['kl'], digits) == float(kl) and float(reward) in (round(p['reward'], 3), round(p['independent_reward'], 3))
               for p in points)

def test_the_frontier_figures_the_readme_quotes_are_measured_points():
    """README's frontier prose is written by hand: each (reward, KL) it quotes must be a point of the measured files it
    cites -- the demo's 54 points, the H200's partial figure -- and the reference and the count must be theirs."""
    from conftest import ROOT
    readme = ' '.join((ROOT/'README.md').read_text().split())
    demo = readme[readme.index('**Reward vs KL on the demo, measured**'):readme.index('**At real shape**')]
    real = readme[readme.index('**At real shape**'):readme.index('(`07_evaluation`)', readme.index('**At real shape**'))]
    demo_points = json.loads((ROOT/'dpo_imdb'/'measured'/'frontier_demo_points.json').read_text())
    h200 = json.loads((ROOT/'dpo_imdb'/'measured'/'frontier_gpu_h200_partial.json').read_text())
    h200_points = [p for run in h200['runs'].values() for p in run['points']]
    for section, points in ((demo, demo_points), (real, h200_points)):
        quoted = QUOTED_POINT.findall(section)
        assert len(quoted) >= 5, quoted                                     # the pattern still finds the prose's points
        assert [q for q in quoted if not _is_a_point(points, *q)] == []
    reference = next(p for p in demo_points if p['method'] == 'reference')
    assert f"{len(demo_points)} points" in demo
    assert f"{reference['reward']:.3f} under the training scorer, {reference['independent_reward']:.3f} under the independent" in demo
