"""The project's main job: `dpo-imdb demo` must show DPO working, within its time and memory budget.

Thresholds from the issue: on >= 200 held-out prompts the policy's mean positive probability beats the reference's by
>= 0.20 with a win rate >= 70% under the training scorer, the independent scorer agrees in direction, and the demo
takes at most 10 minutes and 4 GiB RSS on 2 CPU cores. The same on real IMDb reviews when ../shared exists.
"""
import json, resource, subprocess, time
import pytest
from conftest import SHARED, cli, need_shared

def _run_demo(out, *extra):
    t0 = time.time()
    res = subprocess.run(cli('demo', '--out', str(out), *extra), capture_output=True, text=True)
    seconds = time.time() - t0
    peak_rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads((out/'evaluate'/'metrics.json').read_text()), seconds, peak_rss_gib

def _check(metrics, seconds, peak_rss_gib, label):
    keys = ['n_prompts', 'reference/pos_prob', 'policy/pos_prob', 'pos_prob_gain', 'win_rate',
            'independent/pos_prob_gain', 'independent/win_rate', 'kl', 'reference/distinct_2', 'policy/distinct_2',
            'policy/perplexity_under_reference']
    print(f'\n{label}: {seconds:.0f} s, peak RSS {peak_rss_gib:.2f} GiB; '
          + ', '.join(f'{k}={metrics[k]:.3f}' for k in keys))
    assert metrics['n_prompts'] >= 200
    assert metrics['pos_prob_gain'] >= 0.20, metrics['pos_prob_gain']
    assert metrics['win_rate'] >= 0.70, metrics['win_rate']
    assert metrics['independent/pos_prob_gain'] > 0, metrics['independent/pos_prob_gain']
    assert metrics['kl'] > 0 and metrics['policy/distinct_2'] > 0
    assert seconds <= 600, seconds
    assert peak_rss_gib <= 4, peak_rss_gib

@pytest.mark.slow
def test_demo_synthetic(tmp_path):
    _check(*_run_demo(tmp_path/'run'), 'demo (synthetic reviews)')
    report = (tmp_path/'run'/'report.md').read_text()
    assert 'win_rate' in report and 'train/loss.png' in report

@pytest.mark.slow
def test_demo_real_imdb(tmp_path):
    data = need_shared('data', 'imdb')
    _check(*_run_demo(tmp_path/'run', '--data', str(data)), 'demo (real IMDb reviews)')
