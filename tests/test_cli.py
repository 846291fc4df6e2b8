"""The `dpo-imdb` command line: every RunConfig field a flag, fast refusals that leave nothing behind, `data`, the
result a run ends with, `python -m dpo_imdb`, the model card, `push`, and pairs that trl reads as is."""
import json, os, re, shutil, socket, subprocess, sys, time, typing
from dataclasses import fields
from pathlib import Path
import pandas as pd
import pytest
import yaml
from conftest import cli
from dpo_imdb.config import RunConfig, from_preset, load_config, save_config, to_dict
from dpo_imdb.synthetic import synthetic_reviews
from dpo_imdb import __version__ as dpo_imdb_version
from dpo_imdb.hub import CARD_IMAGES

TIMEOUT = 180          # seconds, for a command that does not train

def dpo_imdb(*args, env: dict | None = None, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    "Run `dpo-imdb ARGS` in a subprocess (with `env` added to this environment)."
    return subprocess.run(cli(*map(str, args)), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env} if env else None)

def config_of(*args) -> dict:
    res = dpo_imdb('config', *args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)

def assert_one_line_error(res: subprocess.CompletedProcess, contains: str):
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('dpo-imdb: error: '), res.stderr
    assert contains in lines[0], lines[0]
    assert 'usage:' not in res.stderr and 'Traceback' not in res.stderr

# -- every field a flag ------------------------------------------------------------------------------------------------

def test_flags_override_the_preset(tmp_path):
    cfg = config_of('--preset', 'colab', '--beta', '0.2', '--policy', 'gpt2-medium', '--seed', '3',
                    '--betas_sweep', '0.05', '1', '--tokenizer', 'gpt2')
    expected = {**to_dict(from_preset('colab')), 'beta': 0.2, 'policy': 'gpt2-medium', 'seed': 3,
                'betas_sweep': [0.05, 1.0], 'tokenizer': 'gpt2'}
    assert cfg == expected
    assert config_of('--preset', 'test', '--tokenizer', 'None')['tokenizer'] is None
    # `run` takes them too; a data folder that does not exist stops it before anything is written
    out = tmp_path/'run'
    res = dpo_imdb('run', '--preset', 'colab', '--beta', '0.2', '--policy', 'gpt2-medium', '--seed', '3',
                   '--data', tmp_path/'no-such-data', '--out', out)
    assert_one_line_error(res, 'no-such-data')
    assert not out.exists()

def test_flags_override_the_file_and_the_file_the_preset(tmp_path):
    full = save_config(from_preset('test', beta=0.3, seed=5), tmp_path/'full.json')
    cfg = config_of('--preset', 'colab', '--config', full, '--seed', '9')
    assert (cfg['policy'], cfg['beta'], cfg['seed'], cfg['name']) == ('tiny-gpt2', 0.3, 9, 'test')
    (tmp_path/'partial.json').write_text(json.dumps({'beta': 0.4}))
    cfg = config_of('--preset', 'test', '--config', tmp_path/'partial.json')
    assert (cfg['policy'], cfg['beta'], cfg['seed']) == ('tiny-gpt2', 0.4, 0)
    cfg = config_of('--preset', 'test', '--smoke', '--n_train_prompts', '12', '--out', tmp_path/'x')
    assert (cfg['n_train_prompts'], cfg['n_eval_prompts'], cfg['out_dir']) == (12, 4, str(tmp_path/'x'))

def test_config_round_trips_through_a_file(tmp_path):
    res = dpo_imdb('config', '--preset', 'demo', '--beta', '0.2')
    assert res.returncode == 0, res.stderr
    (tmp_path/'my.json').write_text(res.stdout)                        # dpo-imdb config ... > my.json
    assert load_config(tmp_path/'my.json') == from_preset('demo', beta=0.2)
    assert config_of('--config', tmp_path/'my.json') == json.loads(res.stdout)
    assert config_of('--preset', 'gpu', '--config', tmp_path/'my.json') == json.loads(res.stdout)

@pytest.mark.parametrize('columns', ['60', '80', '132'])
def test_help_lists_every_field_with_type_and_the_presets_value(monkeypatch, columns):
    from dpo_imdb.cli import COMMANDS, build_parser
    monkeypatch.setenv('COLUMNS', columns)           # the terminal's width: help wraps at spaces, never inside a hub id
    parser = build_parser()
    for command in COMMANDS:
        text = ' '.join(parser.commands[command].format_help().split())
        for f in fields(RunConfig):
            assert f'--{f.name} ' in text, (command, f.name)
            assert ' '.join(f.metadata['help'].split()) in text, (command, f.name)
    res = dpo_imdb('run', '--help')
    assert res.returncode == 0
    text = ' '.join(res.stdout.split())
    for f in fields(RunConfig): assert re.search(f'--{f.name}[ ,]', text), f.name
    demo = from_preset('demo')                  # `run` starts from the demo preset: --help shows its values
    for shown in ('--beta FLOAT', f'(float, default: {demo.beta}, from the demo preset)', '--betas_sweep [FLOAT ...]',
                  '(list of float, default: 0.1 0.5 2.0, from the demo preset)', '--tokenizer STR',
                  '(str or None, default: train, from the demo preset)', '--seed INT', '(int, default: 0, from the demo preset)',
                  '(str, default: synthetic, from the demo preset)', '(str, default: runs/demo, from the demo preset)'):
        assert shown in text, shown
    assert re.search(r'--out( STR)?, --out_dir( STR)?, --out-dir STR', text)   # Python 3.13's argparse: the metavar once
    assert '[--out STR]' in text                                   # the usage line shows the name README types
    assert 'stanfordnlp/imdb' not in text and 'runs/colab' not in text
    colab = ' '.join(dpo_imdb('run', '--preset', 'colab', '--help').stdout.split())
    for shown in ('(float, default: 0.1, from the colab preset)', '(str, default: stanfordnlp/imdb, from the colab preset)',
                  '(str, default: lvwerra/distilbert-imdb, from the colab preset)', '(str, default: runs/colab, from the colab preset)'):
        assert shown in colab, shown
    assert '(str, default: runs/demo, from the demo preset)' in ' '.join(dpo_imdb('demo', '--help').stdout.split())
    top = dpo_imdb('--help')
    assert top.returncode == 0 and all(c in top.stdout for c in [*COMMANDS, 'data', 'push'])

def test_building_the_parser_leaves_runconfig_alone():
    from dpo_imdb.cli import build_parser
    build_parser()                                    # HfArgumentParser rewrites the types of the fields it is given
    assert typing.get_args(next(f for f in fields(RunConfig) if f.name == 'tokenizer').type) == (str, type(None))
    assert RunConfig(tokenizer=None).tokenizer is None

@pytest.mark.parametrize('args, message', [
    (['--beta', 'abc'], "argument --beta: invalid float value: 'abc'"),
    (['--seed', '1.5'], "argument --seed: invalid int value: '1.5'"),
    (['--beta', '-1'], '--beta must be > 0'),
    (['--loss_type', 'kto'], '--loss_type must be one of sigmoid, ipo, hinge'),
    (['--betta', '0.2'], 'unrecognized arguments: --betta 0.2 (did you mean --beta?)'),
    (['--preset', 'nope'], "argument --preset: invalid choice: 'nope'"),
])
def test_a_bad_flag_is_one_line_and_exit_2(args, message):
    assert_one_line_error(dpo_imdb('run', *args), message)

@pytest.mark.parametrize('budget', ['0', '-5', 'soon'])
def test_a_bad_frontier_budget_is_one_line_and_exit_2(budget):
    assert_one_line_error(dpo_imdb('frontier', '--budget', budget),
                          f"argument --budget: must be a number of seconds > 0, got '{budget}'")

def test_no_command_lists_the_commands():
    res = dpo_imdb()
    assert res.returncode == 0 and res.stdout.startswith('usage: dpo-imdb') and not res.stderr, res
    assert all(f'    {c} ' in res.stdout for c in ('run', 'demo', 'frontier', 'data', 'push')), res.stdout
    version = dpo_imdb('--version')
    assert (version.returncode, version.stdout) == (0, f'dpo-imdb {dpo_imdb_version}\n'), version

def test_python_m_dpo_imdb_is_the_same_command(tmp_path):
    for argv in (['--help'], ['run', '--preset', 'colab', '--help'], ['config', '--preset', 'test', '--seed', '4'],
                 ['run', '--betta', '0.2'], ['demo', '--data', str(tmp_path/'nope'), '--out', str(tmp_path/'run')]):
        as_module = subprocess.run([sys.executable, '-m', 'dpo_imdb', *argv], capture_output=True, text=True, timeout=TIMEOUT)
        as_script = dpo_imdb(*argv)
        assert (as_module.returncode, as_module.stdout, as_module.stderr) == \
               (as_script.returncode, as_script.stdout, as_script.stderr), argv
    script = Path(sys.executable).parent/'dpo-imdb'                 # the console script pip installed, next to python
    if script.exists():
        res = subprocess.run([str(script), 'run', '--preset', 'colab', '--help'], capture_output=True, text=True, timeout=TIMEOUT)
        assert res.stdout == dpo_imdb('run', '--preset', 'colab', '--help').stdout

# -- refusals: within 2 s, before any heavy import, naming the problem, nothing written ---------------------------------

def write_reviews(folder: Path, n: int = 40, columns=('text', 'label', 'id')) -> Path:
    "A data folder of synthetic reviews: train.parquet, test.parquet and unsup.parquet (unlabelled)."
    folder.mkdir(parents=True, exist_ok=True)
    for split in ('train', 'test', 'unsup'):
        df = pd.DataFrame(synthetic_reviews(n, split='train' if split == 'unsup' else split))
        if split == 'unsup': df['label'] = -1
        df[list(columns)].to_parquet(folder/f'{split}.parquet')
    return folder

NO_PROXY = {v: '' for v in ('HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy')}

_held_ports: list[socket.socket] = []

def closed_port() -> int:
    "A local TCP port bound here and never listened on, for the tests' life: connecting is refused, and no one else takes it."
    s = socket.socket(); s.bind(('127.0.0.1', 0)); _held_ports.append(s)
    return s.getsockname()[1]

def _refusal(case: str, d: Path) -> tuple[list, str, dict]:
    "The command line of `case` (its inputs made in `d`), the words its one error line must hold, extra environment."
    notes = d/'notes.txt'; notes.write_text('a file')
    good = write_reviews(d/'good')
    if case == 'out_is_a_file': return ['run', '--preset', 'test', '--out', notes], 'notes.txt is a file, not a folder', {}
    if case == 'out_inside_a_file': return ['run', '--preset', 'test', '--out', notes/'run'], 'notes.txt is a file, not a folder', {}
    if case == 'missing_data': return ['demo', '--data', d/'imdb', '--out', d/'runs'/'demo-imdb'], f"data folder '{d/'imdb'}' does not exist", {}
    if case == 'data_is_a_file': return ['demo', '--data', notes, '--out', d/'run'], f'--data {notes} is a file, not a folder', {}
    if case == 'empty_data':
        (d/'empty').mkdir(); return ['demo', '--data', d/'empty', '--out', d/'run'], 'has no train/test/unsup.parquet files', {}
    if case == 'corrupt_parquet':
        bad = shutil.copytree(good, d/'bad'); f = bad/'train.parquet'; f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        return ['demo', '--data', bad, '--out', d/'run'], f'{f} is not a readable parquet file', {}
    if case == 'another_runs_dir':
        save_config(from_preset('demo', out_dir=str(d/'runs'/'demo')), d/'runs'/'demo'/'config.json')
        (d/'runs'/'demo'/'setup').mkdir(); (d/'runs'/'demo'/'setup'/'manifest.json').write_text('{}')   # one stage done
        return ['demo', '--data', good, '--out', d/'runs'/'demo'], "holds a run made with a different config (data: 'synthetic' there", {}
    if case == 'missing_policy':
        return ['run', '--preset', 'test', '--policy', d/'models'/'gpt2', '--out', d/'run'], '--policy: folder', {}
    if case == 'data_offline': return ['data', '--out', d/'imdb'], 'the Hugging Face Hub is switched off', {'HF_HUB_OFFLINE': '1'}
    if case == 'data_out_is_a_file': return ['data', '--out', notes], 'is a file, not a folder', {}
    if case == 'data_unreachable':                       # no hub switch set, but its host refuses connections
        env = {'HF_HUB_OFFLINE': '0', 'HF_DATASETS_OFFLINE': '0', 'HF_ENDPOINT': f'http://127.0.0.1:{closed_port()}', **NO_PROXY}
        return ['data', '--out', d/'imdb'], 'the Hugging Face Hub cannot be reached (127.0.0.1: Connection refused)', env
    if case == 'bad_value': return ['run', '--beta', '-1', '--out', d/'run'], '--beta must be > 0', {}
    raise ValueError(case)

REFUSALS = ['out_is_a_file', 'out_inside_a_file', 'missing_data', 'data_is_a_file', 'empty_data', 'corrupt_parquet',
            'another_runs_dir', 'missing_policy', 'data_offline', 'data_unreachable', 'data_out_is_a_file', 'bad_value']

def _tree(d: Path) -> dict:
    "Every path under `d`, with the bytes of each file."
    return {str(p.relative_to(d)): p.read_bytes() if p.is_file() else None for p in sorted(d.rglob('*'))}

@pytest.mark.parametrize('case', REFUSALS)
def test_a_refusal_is_fast_names_the_problem_and_leaves_nothing(tmp_path, case):
    argv, words, env = _refusal(case, tmp_path)
    before = _tree(tmp_path)
    t0 = time.perf_counter()
    res = dpo_imdb(*argv, env=env)
    seconds = time.perf_counter() - t0
    assert_one_line_error(res, words)
    assert seconds < 2, f'{case}: refused after {seconds:.2f} s'
    assert _tree(tmp_path) == before                    # no run directory, no config.json, no data folder, files untouched
    print(f'{case}: {seconds:.2f} s')

def test_a_refusal_imports_nothing_heavy(tmp_path):
    probe = ("import json, sys; from dpo_imdb.cli import main; status = main(sys.argv[1:]); "
             "print(json.dumps([status, sorted(m for m in ('torch', 'transformers', 'datasets', 'trl') if m in sys.modules)]))")
    (tmp_path/'notes.txt').write_text('a file')
    for argv in (['run', '--out', str(tmp_path/'notes.txt')], ['demo', '--data', str(tmp_path/'nope')], ['data', '--out', str(tmp_path/'x')],
                 ['run', '--beta', 'abc'], ['config', '--preset', 'colab']):
        res = subprocess.run([sys.executable, '-c', probe, *argv], capture_output=True, text=True, timeout=TIMEOUT,
                             env={**os.environ, 'HF_HUB_OFFLINE': '1'})
        status = 0 if argv[0] == 'config' else 2
        assert json.loads(res.stdout.splitlines()[-1]) == [status, []], (argv, res.stdout, res.stderr)

def test_a_problem_found_by_setup_leaves_no_run_directory(tmp_path):
    "Reviews that are nothing but markup pass the path checks; setup refuses them, and the run directory goes."
    data = tmp_path/'data'; data.mkdir()
    pd.DataFrame({'text': ['<br /><br />', '   '] * 10, 'label': [0, 1] * 10}).to_parquet(data/'train.parquet')
    res = dpo_imdb('prompts', '--preset', 'test', '--data', data, '--out', tmp_path/'run')
    assert_one_line_error(res, 'no train reviews')
    assert not (tmp_path/'run').exists()

# -- what a run prints ----------------------------------------------------------------------------------------------------

def test_each_warning_once_as_one_line(capsys):
    import logging, warnings
    from dpo_imdb.cli import quiet_run
    with quiet_run():
        warnings.simplefilter('always')                  # Python would show a warning again from another line
        for _ in range(3):
            warnings.warn('make_prompts: asked for 3000 train prompts,\n  but got 2606')
            logging.getLogger('transformers.trainer').warning('low on disk space')
            logging.getLogger('transformers.trainer').warning('mtime may not be reliable on this filesystem')   # NOISE
    assert capsys.readouterr().err.splitlines() == [
        'dpo-imdb: warning: make_prompts: asked for 3000 train prompts, but got 2606',
        'dpo-imdb: warning: low on disk space']
    assert not any(type(h).__name__ == '_Lines' for h in logging.getLogger('transformers').handlers)     # put back

BAR = re.compile(r'^\s*(?:(.+?): *)?\d+%\|')

def test_a_run_ends_with_its_result_and_prints_no_raw_logs(finished):
    out, res = finished
    m = json.loads((out/'evaluate'/'metrics.json').read_text())
    lines = res.stdout.splitlines()
    end = '\n'.join(lines[next(i for i, l in enumerate(lines) if l.startswith('dpo-imdb: finished in ')):])
    for expected in (f"On {m['n_prompts']} held-out prompts (1 sample each, the same seeds for both models)",
                     f"positive probability    {m['reference/pos_prob']:.3f} -> {m['policy/pos_prob']:.3f} ({m['pos_prob_gain']:+.3f})",
                     f"win rate                {m['win_rate']:.1%} of prompts: the policy's sample scores higher",
                     f"KL(policy || reference) {m['kl']:.2f} nats per sample",
                     f"independent scorer      {m['independent/reference/pos_prob']:.3f} -> {m['independent/policy/pos_prob']:.3f}"
                     f" ({m['independent/pos_prob_gain']:+.3f}), win rate {m['independent/win_rate']:.1%}; tfidf-char",
                     f"report                  {out/'report.md'}", f"plots                   {out/'evaluate'/'sentiment.png'}"):
        assert expected in end, (expected, end)
    samples = [json.loads(l) for l in (out/'evaluate'/'samples.jsonl').read_text().splitlines()]
    for s in samples[:2]:
        prompt = ' '.join(s['prompt'].split())
        assert f'"{prompt}" ...' in end, (prompt, end)
    assert end.count('reference, p ') == 2 and end.count('| policy, p ') == 2
    assert lines[-1] == f"  model                   {out/'train'/'model'}"
    printed = res.stdout + res.stderr
    assert not re.search(r"\{'(eval_|train_)?(loss|runtime|grad_norm)'", printed)       # trl's logged dicts
    assert 'Warning: ' not in printed and 'warnings.warn(' not in printed                 # no Python warning format
    warned = [l for l in printed.splitlines() if 'warning:' in l.lower()]
    assert all(l.startswith('dpo-imdb: warning: ') for l in warned) and len(warned) == len(set(warned)), warned
    bars = {m.group(1) for seg in re.split(r'[\r\n]', res.stderr) if (m := BAR.match(seg))}
    assert bars == {'SFT', 'generate', 'score', 'DPO'}, bars                              # one per long stage, none else

# -- dpo-imdb data: the hub's path, with the hub played by local parquet files ---------------------------------------------

@pytest.mark.slow
def test_data_writes_the_folder_that_data_reads(tmp_path, monkeypatch, capsys):
    import datasets
    from dpo_imdb.cli import main
    hub = write_reviews(tmp_path/'hub', n=200, columns=('text', 'label'))          # stanfordnlp/imdb's splits and columns
    load = datasets.load_dataset
    monkeypatch.setattr(datasets, 'load_dataset', lambda source, **kwargs: load(
        'parquet', data_files={s: str(hub/f'{s}.parquet') for s in ('train', 'test', 'unsup')}))
    for var in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'): monkeypatch.delenv(var, raising=False)
    for var in NO_PROXY: monkeypatch.delenv(var, raising=False)
    host = socket.create_server(('127.0.0.1', 0))                                # the hub's host: accepts a connection
    monkeypatch.setenv('HF_ENDPOINT', f'http://127.0.0.1:{host.getsockname()[1]}')
    imdb = tmp_path/'imdb'
    with host: assert main(['data', '--out', str(imdb)]) == 0
    printed = capsys.readouterr().out
    assert f"{imdb/'train.parquet'} (200 reviews)" in printed and f'dpo-imdb demo --data {imdb} --out runs/demo-imdb' in printed
    assert sorted(p.name for p in imdb.iterdir()) == ['test.parquet', 'train.parquet', 'unsup.parquet']
    assert pd.read_parquet(imdb/'test.parquet')['text'].tolist() == pd.read_parquet(hub/'test.parquet')['text'].tolist()
    res = dpo_imdb('prompts', '--preset', 'test', '--data', imdb, '--out', tmp_path/'run', timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path/'run'/'prompts'/'manifest.json').read_text())['counts'] == {'n_train': 48, 'n_eval': 16}

# -- a finished run: the model card, push, and the pairs in trl's format ----------------------------------------------

@pytest.fixture(scope='module')
def finished(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    "A whole `test`-preset run (well under a minute), and what it printed."
    out = tmp_path_factory.mktemp('cli')/'run'
    res = dpo_imdb('run', '--preset', 'test', '--out', out, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res

@pytest.fixture(scope='module')
def finished_run(finished) -> Path: return finished[0]

@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    "A copy of the finished run that a test may change."
    return Path(shutil.copytree(finished_run, tmp_path/'run'))

def front_matter(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith('---\n'), text[:100]
    return yaml.safe_load(text.split('---\n')[1])

@pytest.mark.slow
def test_the_model_card_is_written_and_parses(finished_run):
    from huggingface_hub import ModelCard
    model = finished_run/'train'/'model'
    meta = front_matter(model/'README.md')
    assert meta['library_name'] == 'transformers' and meta['pipeline_tag'] == 'text-generation'
    assert meta['license'] == 'apache-2.0' and {'dpo', 'trl'} <= set(meta['tags'])
    assert 'base_model' not in meta           # tiny-gpt2 is built here, not a Hub repo
    card = ModelCard.load(model/'README.md')
    assert card.data.to_dict() == meta
    pairs = json.loads((finished_run/'triplets'/'manifest.json').read_text())['counts']
    steps = json.loads((finished_run/'train'/'manifest.json').read_text())['counts']['global_step']
    metrics = json.loads((finished_run/'evaluate'/'metrics.json').read_text())
    for line in ('| beta | 0.1 |', 'loss `sigmoid`', f"| preference pairs | {pairs['n_train_pairs']} train pairs",
                 f'| optimizer steps | {steps} |', f"| win_rate | {metrics['win_rate']:.3f} |", "pipeline('text-generation'",
                 'AutoModelForCausalLM.from_pretrained', '| scorer | `tfidf` |'):
        assert line in card.text, line
    linked = {p.split(')')[0] for p in card.text.split('](images/')[1:]}
    assert linked == set(CARD_IMAGES), linked           # a finished run's card shows every plot (the card links only files
    for image in linked: assert (model/'images'/image).is_file(), image      # that exist: without them it links none)
    assert load_config(model/'run_config.json') == load_config(finished_run/'config.json')

@pytest.mark.slow
def test_the_card_appears_with_training_and_gains_the_evaluation(run_copy):
    shutil.rmtree(run_copy/'evaluate')
    (run_copy/'train'/'model'/'README.md').unlink()
    res = dpo_imdb('train', '--config', run_copy/'config.json', '--out', run_copy)      # finished stages are reused
    assert res.returncode == 0, res.stderr[-2000:]
    text = (run_copy/'train'/'model'/'README.md').read_text()
    assert 'Not evaluated yet' in text and '| win_rate |' not in text
    front_matter(run_copy/'train'/'model'/'README.md')
    res = dpo_imdb('evaluate', '--config', run_copy/'config.json', '--out', run_copy)
    assert res.returncode == 0, res.stderr[-2000:]
    text = (run_copy/'train'/'model'/'README.md').read_text()
    assert 'Not evaluated yet' not in text and '| win_rate |' in text

def _no_token_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ('HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'HF_TOKEN_PATH')}
    return {**env, 'HF_HOME': str(tmp_path/'hf-home'), 'HF_HUB_OFFLINE': '0'}

@pytest.mark.slow
def test_push_fails_cleanly_offline_and_without_a_token(finished_run, tmp_path):
    res = dpo_imdb('push', '--out', finished_run, '--repo-id', 'me/dpo-imdb-test', env={'HF_HUB_OFFLINE': '1', 'HF_TOKEN': 'hf_fake'})
    assert_one_line_error(res, 'HF_HUB_OFFLINE is set')
    res = subprocess.run(cli('push', '--out', str(finished_run), '--repo-id', 'me/dpo-imdb-test', '--with-pairs'),
                         capture_output=True, text=True, timeout=TIMEOUT, env=_no_token_env(tmp_path))
    assert_one_line_error(res, 'no Hugging Face token')
    assert_one_line_error(dpo_imdb('push', '--out', tmp_path/'nowhere', '--repo-id', 'me/x'), 'is not a run directory')
    assert_one_line_error(dpo_imdb('push', '--out', finished_run, '--repo-id', 'not a repo'), 'is not a valid repo id')

def _as_hf_api_takes(method: str, *args, **kwargs):
    "Bind the arguments as `huggingface_hub.HfApi.<method>` would: a misspelt or unknown argument is a TypeError."
    import inspect
    from huggingface_hub import HfApi
    inspect.signature(getattr(HfApi, method)).bind(None, *args, **kwargs)

class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records every call, and the files each `upload_folder` would send; takes
    only the arguments the real one takes."""
    instances = []
    def __init__(self, **kwargs):
        _as_hf_api_takes('__init__', **kwargs)
        self.kwargs, self.calls = kwargs, []
        RecordingApi.instances.append(self)
    def create_repo(self, repo_id, **kwargs):
        _as_hf_api_takes('create_repo', repo_id, **kwargs)
        self.calls.append(('create_repo', repo_id, kwargs))
        return f'https://huggingface.co/{repo_id}'
    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        _as_hf_api_takes('upload_folder', repo_id=repo_id, folder_path=folder_path, **kwargs)
        files = {str(p.relative_to(folder_path)): p.read_bytes() for p in Path(folder_path).rglob('*') if p.is_file()}
        self.calls.append(('upload_folder', repo_id, {**kwargs, 'files': files}))

@pytest.fixture
def stand_in_hub(monkeypatch):
    "The Hub reachable with a token, and `HfApi` replaced by `RecordingApi`."
    import huggingface_hub.constants, dpo_imdb.hub
    monkeypatch.setattr(dpo_imdb.hub, 'HfApi', RecordingApi)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.setenv('HF_HUB_OFFLINE', '0')
    monkeypatch.setenv('HF_TOKEN', 'hf_fake_token')
    RecordingApi.instances = []
    return RecordingApi

@pytest.mark.slow
def test_push_uploads_model_tokenizer_card_and_pairs(run_copy, stand_in_hub, capsys):
    from dpo_imdb.cli import main
    assert main(['push', '--out', str(run_copy), '--repo-id', 'me/dpo-imdb-test', '--private', '--with-pairs']) == 0
    assert 'pushed https://huggingface.co/me/dpo-imdb-test' in capsys.readouterr().out
    (api,) = stand_in_hub.instances
    assert api.kwargs == {'token': 'hf_fake_token'}
    assert [(c[0], c[1], c[2].get('repo_type'), c[2].get('private')) for c in api.calls] == [
        ('create_repo', 'me/dpo-imdb-test', None, True), ('upload_folder', 'me/dpo-imdb-test', None, None),
        ('create_repo', 'me/dpo-imdb-test-pairs', 'dataset', True), ('upload_folder', 'me/dpo-imdb-test-pairs', 'dataset', None)]
    model_files, pairs_files = api.calls[1][2]['files'], api.calls[3][2]['files']
    model = run_copy/'train'/'model'
    for name in ('model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'README.md'):
        assert model_files[name] == (model/name).read_bytes(), name           # the model, the tokenizer and the card
    card = model_files['README.md'].decode()
    assert "model='me/dpo-imdb-test'" in card and 'me/dpo-imdb-test-pairs' in yaml.safe_load(card.split('---\n')[1])['datasets']
    assert {'README.md', 'data/train-00000-of-00001.parquet', 'data/eval-00000-of-00001.parquet'} <= set(pairs_files)
    assert yaml.safe_load(pairs_files['README.md'].decode().split('---\n')[1])['configs'][0]['data_files'][0]['split'] == 'train'

@pytest.mark.slow
def test_push_checks_everything_before_any_upload(run_copy, stand_in_hub, monkeypatch, tmp_path, capsys):
    import huggingface_hub.constants
    from dpo_imdb.cli import main
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)
    assert main(['push', '--out', str(run_copy), '--repo-id', 'me/x', '--with-pairs']) == 2
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    monkeypatch.delenv('HF_TOKEN')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_TOKEN_PATH', str(tmp_path/'no-token'))
    assert main(['push', '--out', str(run_copy), '--repo-id', 'me/x', '--with-pairs']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and 'HF_HUB_OFFLINE' in err[0] and 'no Hugging Face token' in err[1], err
    assert all(api.calls == [] for api in stand_in_hub.instances)
    assert 'me/x' not in (run_copy/'train'/'model'/'README.md').read_text()         # the card is not touched either

@pytest.mark.slow
def test_a_plain_trl_dpo_trainer_accepts_the_pairs(finished_run, tmp_path):
    import math
    from datasets import load_dataset, load_from_disk
    from trl import DPOConfig, DPOTrainer
    from dpo_imdb.hub import export_pairs
    model = str(finished_run/'train'/'model')                    # a tiny GPT-2 and its tokenizer
    saved = load_from_disk(str(finished_run/'triplets'/'pairs'))
    # what `trl dpo --dataset_name` does; a fresh cache, since datasets keys a local folder's cache by its name alone
    exported = load_dataset(str(export_pairs(finished_run, tmp_path/'pairs')), cache_dir=str(tmp_path/'hf-cache'))
    assert {s: exported[s].to_list() for s in saved} == {s: saved[s].to_list() for s in saved}
    for i, pairs in enumerate((saved, exported)):
        args = DPOConfig(output_dir=str(tmp_path/f'out{i}'), max_steps=1, per_device_train_batch_size=4, logging_steps=1,
                         save_strategy='no', report_to='none', use_cpu=True, disable_tqdm=True)
        trainer = DPOTrainer(model=model, args=args, train_dataset=pairs['train'], eval_dataset=pairs['eval'])
        trainer.train()
        assert trainer.state.global_step == 1
        assert math.isclose(trainer.state.log_history[0]['loss'], math.log(2), abs_tol=1e-3)   # policy = reference at step 1
