"""The `gpu` preset's whole code path at smoke size on a CPU: GPT-2 (124M) built from a config without weights, SFT,
a TF-IDF scorer on real IMDb, every stage, and a report that states the precision and both scorers."""
import json, math, subprocess
from dataclasses import replace
import pytest
from conftest import cli, real_data
from dpo_imdb.config import from_preset, save_config, smoke

@pytest.mark.slow
def test_gpu_preset_smoke_on_cpu(tmp_path):
    gpt2 = str(real_data('DPO_IMDB_GPT2_DIR', 'config.json', 'vocab.json', 'merges.txt'))
    imdb = str(real_data('DPO_IMDB_DATA_DIR', 'train.parquet', 'test.parquet'))
    cfg = replace(smoke(from_preset('gpu')), policy=gpt2, data=imdb, device='cpu', out_dir=str(tmp_path/'run'),
                  wandb_mode='disabled')
    res = subprocess.run(cli('run', '--config', str(save_config(cfg, tmp_path/'cfg.json'))), capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path/'run'
    setup = json.loads((run/'setup'/'manifest.json').read_text())['counts']
    assert setup['reference_saved'] and setup['sft_steps'] == 2 and setup['precision'] == 'torch.float32'
    cards = json.loads((run/'setup'/'scorers.json').read_text())
    assert cards['scorer']['name'] == 'tfidf' and cards['independent_scorer']['name'] == 'tfidf-char'
    metrics = json.loads((run/'evaluate'/'metrics.json').read_text())
    assert metrics['n_prompts'] == cfg.n_eval_prompts and math.isfinite(metrics['kl'])
    report = (run/'report.md').read_text()
    assert 'every stage computes in float32' in report and '## Scorers' in report
    # built from the config: GPT-2's shape, not a tiny model
    config = json.loads((run/'setup'/'reference'/'config.json').read_text())
    assert (config['n_layer'], config['n_embd'], config['vocab_size']) == (12, 768, 50257)
