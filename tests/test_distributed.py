"""`dpo-imdb run` as two processes (`accelerate launch`, gloo on the CPU): the single-process result, one clear stop when
a process dies, a resume from the finished chunks, and accelerate config files that accelerate accepts."""
import hashlib, json, os, signal, subprocess, sys, time
from pathlib import Path
import psutil
import pytest
import yaml
from conftest import ROOT, cli, finished_chunks
from dpo_imdb.config import from_preset, save_config

CONFIGS = ROOT/'accelerate_configs'
TIMEOUT = 600                                   # seconds, for any one command

def launch(n: int, *args, config: str = 'cpu.yaml') -> list[str]:
    "`accelerate launch` of `dpo-imdb` as `n` processes, from a config file of the repo (no default config is read)."
    return [sys.executable, '-m', 'accelerate.commands.launch', '--config_file', str(CONFIGS/config),
            '--num_processes', str(n), '--main_process_port', '0', '-m', 'dpo_imdb.cli', *args]

ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'TOKENIZERS_PARALLELISM': 'false'}   # one thread: the same kernels everywhere

def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT, **kwargs)

def _sha(path: Path) -> str: return hashlib.sha256(path.read_bytes()).hexdigest()
def _manifest(run_dir: Path, stage: str) -> dict: return json.loads((run_dir/stage/'manifest.json').read_text())

def _artifacts(run_dir: Path) -> dict:
    "The bytes of what generation, scoring and pairing wrote."
    files = [run_dir/'triplets'/'triplets.jsonl'] + sorted((run_dir/'triplets'/'dataset').glob('*.arrow'))
    files += [f for stage in ('generate', 'score') if (run_dir/stage).exists()
              for f in sorted((run_dir/stage/'dataset').glob('*.arrow'))]
    return {str(f.relative_to(run_dir)): _sha(f) for f in files}

# -- the config files: accelerate accepts them, and they keep what the pipeline relies on

def _validated(name: str):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    args = launch_command_parser().parse_args(['--config_file', str(CONFIGS/name), '--num_processes', '4',
                                               '-m', 'dpo_imdb.cli', 'run'])
    return _validate_launch_command(args)[:2]

@pytest.mark.parametrize('name,kind', [('cpu.yaml', 'MULTI_GPU'), ('multi_gpu.yaml', 'MULTI_GPU'),
                                       ('deepspeed_zero2.yaml', 'DEEPSPEED'), ('deepspeed_zero3.yaml', 'DEEPSPEED'),
                                       ('fsdp.yaml', 'FSDP')])
def test_accelerate_config_files_are_accepted(name, kind):
    from accelerate.utils.launch import prepare_multi_gpu_env
    args, defaults = _validated(name)
    assert defaults.distributed_type.name == kind and args.num_processes == 4
    raw = yaml.safe_load((CONFIGS/name).read_text())
    ds, fsdp = raw.get('deepspeed_config', {}), raw.get('fsdp_config', {})
    # the run's config decides batch, accumulation and clipping (DeepSpeed 'auto'), not the file
    assert not {'gradient_accumulation_steps', 'gradient_clipping', 'train_batch_size'} & set(ds)
    # every process loads the reference whole to sample with it: no ZeRO-3 init, no rank-0-only loading
    assert ds.get('zero3_init_flag', False) is False and fsdp.get('fsdp_cpu_ram_efficient_loading', False) is False
    if ds.get('zero_stage') == 3: assert ds['zero3_save_16bit_model'] is True        # a whole model is saved
    if kind == 'FSDP':
        env = prepare_multi_gpu_env(args)
        assert env['FSDP_STATE_DICT_TYPE'] == 'FULL_STATE_DICT' and env['FSDP_TRANSFORMER_CLS_TO_WRAP'] == 'GPT2Block'

# -- two processes on the CPU

@pytest.mark.slow
@pytest.mark.parametrize('two_args', [[], ['--activation_checkpointing']], ids=['plain', 'checkpointing'])
def test_two_processes_give_the_single_process_result(tmp_path, two_args):
    # with activation checkpointing, DDP's backward recomputes each block: the same training as one plain process
    one, two = tmp_path/'one', tmp_path/'two'
    res1 = run(cli('run', '--preset', 'test', '--out', str(one)))
    assert res1.returncode == 0, res1.stderr[-3000:]
    res2 = run(launch(2, 'run', '--preset', 'test', '--out', str(two), *two_args))
    assert res2.returncode == 0, res2.stderr[-3000:]
    from dpo_imdb.training import CHECKPOINTING_ARG
    import torch
    args = torch.load(two/'train'/'model'/'training_args.bin', weights_only=False)
    assert getattr(args, CHECKPOINTING_ARG) is bool(two_args)          # what the trainer was told
    for stage in ('generate', 'score', 'train', 'evaluate'):
        assert _manifest(one, stage)['processes'] == 1 and _manifest(two, stage)['processes'] == 2, stage
    assert _artifacts(two) == _artifacts(one)                          # byte for byte: completions, scores, pairs
    # training: the same global batch, so the same losses. At step 1 the policy is still the reference (loss log 2
    # whatever the batch); the later steps and the held-out losses show that the updates were the same too.
    losses = lambda d, key: {r['step']: r[key] for r in json.loads((d/'train'/'history.json').read_text()) if key in r}
    for key in ('loss', 'eval_loss'):
        assert losses(two, key).keys() == losses(one, key).keys() and len(losses(one, key)) >= 3, key
    # Both runs compute each pair's loss with the same forward; two processes average their halves' means and all-reduce
    # the gradients, which adds the same numbers in another order: a few u (6e-8) relative to losses below 1, and Adam
    # steps that turn on those digits only for weights whose gradient is as small as its eps (see 06_training). The
    # logged losses stay within 1e-5, about 100 u; a real difference -- another batch, a missed all-reduce -- is 1e-2 or more.
    for step, value in losses(one, 'loss').items(): assert abs(losses(two, 'loss')[step] - value) < 1e-5, step
    assert 1 in losses(one, 'loss')
    # held-out losses: the Trainer averages each process's mean, and when the processes cannot split the eval pairs
    # evenly the sampler repeats one pair on the short process, so they agree exactly only for an even split
    n_eval = _manifest(one, 'triplets')['counts']['n_eval_pairs']
    for step, value in losses(one, 'eval_loss').items():
        assert abs(losses(two, 'eval_loss')[step] - value) < (1e-5 if n_eval % 2 == 0 or step == 0 else 2e-3), step
    # the same updates: the final weights of the tuned policy agree
    from safetensors.torch import load_file
    w1, w2 = (load_file(str(d/'train'/'model'/'model.safetensors')) for d in (one, two))
    assert w1.keys() == w2.keys() and max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    assert _manifest(two, 'train')['counts'] == _manifest(one, 'train')['counts']
    # the main process alone writes the log, the report and the final model
    events = [json.loads(line) for line in (two/'stages.jsonl').read_text().splitlines()]
    finished = [e['stage'] for e in events if e['event'] == 'finish']
    assert sorted(finished) == sorted(set(finished)) and len(finished) == 7
    assert (two/'report.md').exists() and (two/'train'/'model'/'model.safetensors').exists()
    assert res2.stdout.count('dpo-imdb: generate started') == 1

def _workers(launcher: psutil.Process) -> dict[int, psutil.Process]:
    "The processes a launcher started, by rank."
    found = {}
    for p in launcher.children(recursive=True):
        try: rank = p.environ().get('RANK')
        except psutil.Error: continue
        if rank is not None and 'dpo_imdb.cli' in ' '.join(p.cmdline()): found[int(rank)] = p
    return found

@pytest.mark.slow
def test_a_dead_process_stops_the_run_and_the_rerun_resumes(tmp_path):
    # small chunks and longer completions, so that rank 1 dies in the middle of generation
    cfg = save_config(from_preset('test', n_train_prompts=96, max_new_tokens=16, chunk_prompts=4, gen_batch_size=8),
                      tmp_path/'cfg.json')
    clean, killed = tmp_path/'clean', tmp_path/'killed'
    res = run(cli('triplets', '--config', str(cfg), '--out', str(clean)))
    assert res.returncode == 0, res.stderr[-3000:]

    cmd = launch(2, 'triplets', '--config', str(cfg), '--out', str(killed))
    log = open(tmp_path/'launch.log', 'w+')
    launcher = subprocess.Popen(cmd, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    chunks = killed/'generate'/'chunks'
    try:
        t0 = time.time()
        while not finished_chunks(chunks):                              # generation has begun
            assert launcher.poll() is None and time.time() - t0 < TIMEOUT, 'the run ended before generating'
            time.sleep(0.02)
        rank1 = _workers(psutil.Process(launcher.pid))[1]
        rank1.send_signal(signal.SIGKILL)
        killed_at = time.time()
        code = launcher.wait(timeout=120)                               # the whole run stops, it does not hang
        stopped_after = time.time() - killed_at
    finally:
        if launcher.poll() is None: os.killpg(launcher.pid, signal.SIGKILL); launcher.wait()
    log.seek(0); out = log.read()
    assert code != 0 and stopped_after < 60, (code, stopped_after)
    assert 'rank 0 of 2 stopped' in out and 'rerun the same command' in out, out[-3000:]
    assert not (killed/'generate'/'manifest.json').exists()
    made = finished_chunks(chunks)
    assert 0 < len(made) < 24, made                                     # 24 chunks of 4 prompts: stopped half-way

    res = run(cmd)                                                      # the same command again
    assert res.returncode == 0, res.stderr[-3000:]
    assert _artifacts(killed) == _artifacts(clean)
    for name, mtime in made.items():                                    # finished chunks were reused, not remade
        assert (chunks/name/'dataset_info.json').stat().st_mtime_ns == mtime, name
    assert _manifest(killed, 'generate')['processes'] == 2

@pytest.mark.slow
def test_a_batch_the_processes_cannot_share_is_refused_at_once(tmp_path):
    cfg = save_config(from_preset('test', train_batch_size=7), tmp_path/'cfg.json')
    res = run(launch(2, 'run', '--config', str(cfg), '--out', str(tmp_path/'run')))
    assert res.returncode != 0
    assert 'dpo-imdb: error: --train_batch_size (7) is the batch of all 2 processes' in res.stderr
    assert not (tmp_path/'run'/'setup').exists()                       # before any work

@pytest.mark.slow
def test_accelerate_cpu_flag_is_refused_with_the_command_that_works(tmp_path):
    # `accelerate launch --cpu --num_processes 2` starts one process: say so instead of running on one
    cmd = [sys.executable, '-m', 'accelerate.commands.launch', '--cpu', '--num_processes', '2', '--num_machines', '1',
           '--mixed_precision', 'no', '--dynamo_backend', 'no', '-m', 'dpo_imdb.cli', 'prompts', '--preset', 'test',
           '--out', str(tmp_path/'run')]
    res = run(cmd)
    assert res.returncode != 0
    assert 'starts a single process' in res.stderr and '--multi_gpu --num_processes N' in res.stderr
    assert not (tmp_path/'run').exists()
