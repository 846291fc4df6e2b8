"""The prepared GPU check: the `gpu` preset end to end, then ours against the peers a user would pick, in one run.

    bash bench/gpu_check.sh                 # on a GPU machine (installs the carried wheels first)
    python bench/gpu_check.py --cpu --smoke # the same steps at smoke size on a CPU (a dry run of this script)

Steps, each recorded in OUT/gpu_check.json as soon as it ends (so a run cut short keeps what it measured):

1. `environment`: GPU, driver-visible memory, library versions.
2. `gpu_tests`: the notebook cells flagged `gpu` (`nbdev_test --flags gpu`) of the notebooks that have them.
3. `preset`: `dpo-imdb run --preset gpu` with GPT-2's config and tokenizer (no weights: SFT teaches it) and real IMDb,
   in-process; per-stage seconds and peak GPU memory from the run's manifests, generation tokens/s, evaluation metrics.
4. `generation`: on the preset's SFT reference, real prompts, 4 samples x `max_new_tokens` each, in the run's
   precision: ours (`generate_completions`, with its recorded log-probs) against HF `model.generate` on a left-padded
   batch of the same rows in the same autocast, alone and followed by the teacher-forced pass that gives it the
   reference log-probs ours records. Interleaved repeats, medians.
5. `training`: DPO steps on the preset's pairs: ours (`TripletDPOTrainer`, recorded reference log-probs, no
   reference model) against trl's `DPOTrainer` with its reference model, same batch, steps and precision.

Budget: every step checks the time left (`--budget`, default 480 s) and is skipped, and recorded as skipped, when it
would not fit. Paths come from `DPO_IMDB_GPT2_DIR` and `DPO_IMDB_DATA_DIR`.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time, traceback
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
for k, v in {'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'WANDB_MODE': 'disabled',
             'TOKENIZERS_PARALLELISM': 'false', 'TRANSFORMERS_VERBOSITY': 'error'}.items(): os.environ.setdefault(k, v)

import torch

T0 = time.time()


class Check:
    "The results so far, written to `path` after every step."
    def __init__(self, path: Path, budget: float):
        self.path, self.budget, self.results = path, budget, {'steps': {}}
        path.parent.mkdir(parents=True, exist_ok=True)

    def left(self) -> float: return self.budget - (time.time() - T0)

    def step(self, name: str, fn, needs: float = 0.0):
        "Run `fn()` if `needs` seconds are left; record its result, its time, or its error."
        if self.left() < needs:
            self.results['steps'][name] = {'skipped': f'{self.left():.0f} s left, needs about {needs:.0f} s'}
            print(f'== {name}: skipped ({self.left():.0f} s left)', flush=True)
        else:
            print(f'== {name} ({self.left():.0f} s left)', flush=True)
            t0 = time.time()
            try: out = {'ok': True, **fn()}
            except Exception as e:
                traceback.print_exc()
                out = {'ok': False, 'error': f'{type(e).__name__}: {e}'[:2000]}
            out['seconds'] = round(time.time() - t0, 2)
            self.results['steps'][name] = out
            print(json.dumps(out, indent=1, default=str)[:4000], flush=True)
        self.results['elapsed_seconds'] = round(time.time() - T0, 1)
        self.path.write_text(json.dumps(self.results, indent=1, default=str) + '\n')


def _sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()


def _median_runs(sides: dict, repeats: int) -> dict:
    "Time every side `repeats` times, interleaved (a, b, c, a, b, c, ...); medians and all runs."
    runs = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            _sync(); t0 = time.perf_counter(); extra = fn(); _sync()
            runs[name].append({'seconds': time.perf_counter() - t0, **(extra or {})})
    return {name: {'median_seconds': statistics.median(r['seconds'] for r in rs), 'runs': rs} for name, rs in runs.items()}


# -- steps ----------------------------------------------------------------------------------------------------------
def environment(args) -> dict:
    import transformers, trl, datasets, accelerate
    out = {'python': platform.python_version(), 'torch': torch.__version__, 'cuda': torch.version.cuda,
           'transformers': transformers.__version__, 'trl': trl.__version__, 'datasets': datasets.__version__,
           'accelerate': accelerate.__version__, 'cpu_count': os.cpu_count(), 'loadavg': os.getloadavg()}
    from importlib.metadata import version, PackageNotFoundError
    for name in ('pyarrow', 'fsspec', 'huggingface_hub', 'pandas', 'scikit-learn'):   # datasets 5.2 asks pyarrow>=24,
        try: out[name] = version(name)                                                # fsspec<=2026.9, hub>=1.31: the
        except PackageNotFoundError: out[name] = None                                 # image's own, not carried
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(),
                   sdpa_flash=torch.backends.cuda.flash_sdp_enabled())
    return out


def gpu_tests(args) -> dict:
    "Run the cells flagged `gpu` (and the ordinary cells they need) of every notebook that has some."
    notebooks = sorted(str(p) for p in (ROOT/'nbs').glob('*.ipynb') if '#| gpu' in p.read_text())
    results = {}
    for nb in notebooks:
        t0 = time.time()
        res = subprocess.run(['nbdev_test', '--flags', 'gpu', '--path', nb, '--do_print'], cwd=ROOT, capture_output=True,
                             text=True, timeout=max(60, int(args.check.left())))
        results[Path(nb).name] = {'passed': res.returncode == 0, 'seconds': round(time.time() - t0, 1),
                                  'output_tail': (res.stdout + res.stderr)[-1500:]}
    return {'notebooks': results, 'all_passed': all(r['passed'] for r in results.values())}


def preset(args) -> dict:
    from dpo_imdb.config import from_preset, smoke
    from dpo_imdb.pipeline import STAGES, run_pipeline
    cfg = from_preset('gpu', policy=os.environ['DPO_IMDB_GPT2_DIR'], data=os.environ['DPO_IMDB_DATA_DIR'],
                      out_dir=str(args.out/'run'), wandb_mode='disabled', **args.preset_overrides)
    if args.smoke: cfg = replace(smoke(cfg), out_dir=str(args.out/'run'))
    if args.cpu: cfg = replace(cfg, device='cpu', precision='fp32')
    args.cfg = cfg
    run = run_pipeline(cfg, force=True)
    stages = {}
    for stage in STAGES:
        m = run.manifest(stage)
        stages[stage] = {k: m.get(k) for k in ('seconds', 'peak_rss_mb', 'peak_gpu_mb')} | {'counts': m['counts']}
    gen = stages['generate']
    gen['tokens_per_second'] = round(gen['counts']['n_tokens'] / gen['seconds'], 1)
    metrics = json.loads((run.path('evaluate')/'metrics.json').read_text())
    return {'config': {k: getattr(cfg, k) for k in ('n_train_prompts', 'n_eval_prompts', 'sft_steps', 'max_new_tokens',
                                                      'gen_batch_size', 'train_batch_size', 'precision', 'device')},
            'stages': stages, 'total_stage_seconds': round(sum(s['seconds'] for s in stages.values()), 1),
            'metrics': metrics, 'scorers': json.loads((run.path('setup')/'scorers.json').read_text()),
            'samples_md': (run.path('evaluate')/'samples.md').read_text()[:3000]}


def _reference(args):
    from dpo_imdb.data import load_tokenizer
    from dpo_imdb.models import compute_dtype, load_policy, resolve_device
    run = Path(args.cfg.out_dir)
    device = resolve_device(args.cfg.device)
    tok = load_tokenizer(str(run/'setup'/'tokenizer'))
    return load_policy(str(run/'setup'/'reference'), tok, device=device), tok, compute_dtype(args.cfg.precision, device)


def generation(args) -> dict:
    from datasets import load_from_disk
    from dpo_imdb.generation import SamplingConfig, generate_completions
    from dpo_imdb.loss import completion_logps
    from dpo_imdb.models import autocast
    model, tok, dtype = _reference(args)
    prompts = load_from_disk(str(Path(args.cfg.out_dir)/'prompts'/'dataset'))['train'].select(range(args.gen_prompts))
    n, T, B = 4, args.cfg.max_new_tokens, args.gen_batch
    sampling = SamplingConfig(n=n, max_new_tokens=T, batch_size=B)
    rows = [list(p) for p in prompts['prompt_ids'] for _ in range(n)]          # the same rows, prompt-major

    def ours():
        ds = generate_completions(model, tok, prompts, sampling, dtype, progress=False)
        return {'tokens': sum(map(len, ds['completion_ids']))}

    def hf(record_logps: bool):
        def go():
            tokens = 0
            for i in range(0, len(rows), B):
                batch = tok.pad({'input_ids': rows[i:i + B]}, return_tensors='pt').to(model.device)   # left padding
                with torch.inference_mode(), autocast(model.device, dtype):
                    out = model.generate(**batch, do_sample=True, top_k=0, top_p=1.0, temperature=1.0, max_new_tokens=T,
                                         pad_token_id=tok.pad_token_id)
                new = out[:, batch['input_ids'].shape[1]:]
                keep = [r[:int((r != tok.pad_token_id).sum()) or 1].tolist() for r in new]   # EOS = pad for GPT-2
                tokens += sum(map(len, keep))
                if record_logps: completion_logps(model, rows[i:i + B], keep, B, dtype)
            return {'tokens': tokens}
        return go

    sides = {'ours': ours, 'hf_generate': hf(False), 'hf_generate+logps': hf(True)}
    ours()                                                                       # warm-up (kernels, allocator)
    timing = _median_runs(sides, args.repeats)
    for name, t in timing.items():
        t['tokens_per_second'] = round(statistics.median(r['tokens'] / r['seconds'] for r in t['runs']), 1)
    base = timing['ours']['median_seconds']
    return {'rows': len(rows), 'batch': B, 'max_new_tokens': T, 'dtype': str(dtype), 'timing': timing,
            'speedup_vs_hf_generate': round(timing['hf_generate']['median_seconds'] / base, 2),
            'speedup_vs_hf_generate_with_logps': round(timing['hf_generate+logps']['median_seconds'] / base, 2)}


def training(args) -> dict:
    import copy, tempfile
    from datasets import load_from_disk
    from trl import DPOConfig, DPOTrainer
    from dpo_imdb.training import dpo_config, make_trainer
    model, tok, dtype = _reference(args)
    pairs = load_from_disk(str(Path(args.cfg.out_dir)/'triplets'/'pairs'))['train']
    steps, warmup, batch = args.train_steps, 2, args.cfg.train_batch_size
    pairs = pairs.select(range(min(len(pairs), (steps + warmup) * batch)))
    cfg = replace(args.cfg, max_steps=steps + warmup, logging_steps=1, save_steps=10**6, eval_steps=10**6, warmup_ratio=0.0)
    marks = {}

    class Clock:
        "Times the optimizer steps after the warm-up ones."
        def __init__(self, name): self.name = name
        def __call__(self, step):
            if step == warmup: _sync(); marks[self.name] = [time.perf_counter()]
            if step == warmup + steps: _sync(); marks[self.name].append(time.perf_counter())

    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    class Hook(TrainerCallback):
        def __init__(self, clock): self.clock = clock
        def on_step_end(self, args_, state, control, **kw): self.clock(state.global_step)

    out = {}
    with tempfile.TemporaryDirectory() as d:
        ours = make_trainer(copy.deepcopy(model), tok, pairs, None, cfg, Path(d)/'ours', progress=False, callbacks=[Hook(Clock('ours'))])
        ours.args.save_strategy = 'no'
        ours.train()
        loss_ours = next(r['loss'] for r in ours.state.log_history if 'loss' in r)
        del ours
        if torch.cuda.is_available(): torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        peer_args = DPOConfig(output_dir=str(Path(d)/'trl'), beta=cfg.beta, max_length=cfg.max_length, max_steps=steps + warmup,
                              per_device_train_batch_size=batch, learning_rate=cfg.learning_rate, warmup_steps=0,
                              bf16=dtype == torch.bfloat16, use_cpu=args.cpu, report_to='none', save_strategy='no',
                              logging_steps=1, gradient_checkpointing=False, disable_tqdm=True)
        text = pairs.select_columns(['prompt', 'chosen', 'rejected'])
        peer = DPOTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(model), args=peer_args, train_dataset=text,
                          processing_class=tok, callbacks=[Hook(Clock('trl'))])
        peer.remove_callback(PrinterCallback)              # no printed logs: the numbers are in the results
        peer.train()
        loss_trl = next(r['loss'] for r in peer.state.log_history if 'loss' in r)
        peak_trl = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    for name in ('ours', 'trl'):
        a, b = marks[name]
        out[name] = {'seconds': round(b - a, 3), 'pairs_per_second': round(steps * batch / (b - a), 2)}
    out['speedup_vs_trl'] = round(out['trl']['seconds'] / out['ours']['seconds'], 2)
    out['step1_loss'] = {'ours': loss_ours, 'trl': loss_trl,
                         'note': "trl re-tokenizes the text (appends EOS), so its sequences differ slightly from ours"}
    out.update(steps=steps, batch=batch, dtype=str(dtype), trl_peak_gpu_mb=peak_trl)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cpu', action='store_true', help='run on the CPU in fp32 (a dry run of this script)')
    p.add_argument('--smoke', action='store_true', help='the smoke size of the preset and tiny benchmarks')
    p.add_argument('--out', type=Path, default=Path(os.environ.get('OUT', ROOT/'bench'/'gpu_check_out')))
    p.add_argument('--budget', type=float, default=480.0, help='seconds for the whole check')
    p.add_argument('--skip-tests', action='store_true')
    args = p.parse_args()
    for var in ('DPO_IMDB_GPT2_DIR', 'DPO_IMDB_DATA_DIR'):
        if not os.environ.get(var): sys.exit(f'gpu_check: set {var} (see bench/gpu_check.sh)')
    small = args.smoke or args.cpu
    args.preset_overrides = {}
    args.gen_prompts, args.gen_batch, args.repeats, args.train_steps = (8, 8, 1, 2) if small else (512, 512, 3, 20)
    args.check = Check(args.out/'gpu_check.json', args.budget)
    args.check.results.update(mode='cpu' if args.cpu else 'gpu', smoke=args.smoke, started=time.strftime('%Y-%m-%dT%H:%M:%S'))
    args.check.step('environment', lambda: environment(args))
    if not (args.cpu or args.skip_tests): args.check.step('gpu_tests', lambda: gpu_tests(args), needs=60)
    args.check.step('preset', lambda: preset(args), needs=60)
    if 'cfg' in vars(args):
        args.check.step('generation', lambda: generation(args), needs=30)
        args.check.step('training', lambda: training(args), needs=30)
    steps = args.check.results['steps']
    failed = [k for k, v in steps.items() if not v.get('ok', True) or v.get('all_passed') is False]
    print(f"gpu_check: {len(steps)} steps in {time.time() - T0:.0f} s; failed: {failed or 'none'}; results in {args.check.path}")
    sys.exit(1 if failed else 0)


if __name__ == '__main__': main()
