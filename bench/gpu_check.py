"""The prepared GPU check: the `gpu` preset end to end, then ours against the peers a user would pick, in one run.

    bash bench/gpu_check.sh                        # on a GPU machine (installs the carried wheels first)
    bash bench/gpu_check.sh --only frontier        # the `gpu` preset's reward-vs-KL frontier alone, its own budget
    python bench/gpu_check.py --cpu --smoke        # every step at smoke size on a CPU (a dry run of this script)

Steps, each recorded in OUT/gpu_check.json as soon as it ends (so a run cut short keeps what it measured):

1. `environment`: GPU, driver-visible memory, library versions.
2. `preset`: `dpo-imdb run --preset gpu` with GPT-2's config and tokenizer (no weights: SFT teaches it) and real IMDb
   (train, test and unsup), in-process; the whole call's seconds, per-stage seconds and peak GPU memory from the run's
   manifests, SFT's seconds apart from the rest of setup, generation tokens/s, evaluation metrics.
3. `generation`: on the preset's SFT reference, real prompts, 4 samples x `max_new_tokens` each, in the run's
   precision: ours (`generate_completions` as the pipeline runs it: the captured decode graph, log-probs recorded)
   against HF `model.generate` on a left-padded batch of the same rows, its weights in the run's precision (bf16 weights,
   no autocast, as a user loads them for speed) -- plain, plain followed by
   the teacher-forced pass that gives it the log-probs ours records, and with a static cache, whose decoding forward
   transformers compiles (`torch.compile`, mode reduce-overhead): a fresh cache per call, as `generate` makes it, and
   one `StaticCache` kept across calls and reset, so that the compiled graph replays (the faster is the peer) --
   and against our own eager loop and (CUDA) our
   decoder compiled by inductor before its capture (`ours_compiled`). Interleaved
   repeats, medians. Then ours at the pipeline's batch of 1,024, and `torch.profiler` over one batch of each loop.
4. `training`: DPO steps on the preset's pairs: ours (`TripletDPOTrainer`, recorded reference log-probs, no
   reference model) against trl's `DPOTrainer` with its reference model, and with `precompute_ref_log_probs` (its pass
   over the pairs timed apart, and its share added), same batch, steps and precision.
5. `rloo`: online RL on the preset's reference with the training scorer as reward: `rloo_train` for 150 steps of 64
   completions, and trl's `RLOOTrainer` for a few steps of the same size beside it (seconds per step).
6. `sft`: `train_sft` on the preset's model, batch and length: tokens/s of the training loop, eager and compiled.
7. `gpu_tests`: the notebook cells flagged `gpu` (`nbdev_test --flags gpu`) of the notebooks that have them.
8. `frontier` (with `--frontier` or `--only frontier`): `dpo-imdb frontier --preset gpu` in a subprocess with its own
   time budget (`--frontier-budget`, within `--budget`); OUT/frontier_points.json, OUT/frontier.png and
   OUT/frontier_table.md. The frontier skips the runs that would not finish 20 s before the step's deadline
   (`dpo-imdb frontier --budget`); then, or stopped from outside, the points of the runs it finished
   (OUT/frontier_points_partial.json, copied as each run ends; OUT/frontier_partial.png; whether DPO dominates on
   them), which a later call on the same machine resumes.

Last, `targets`: each GPU target (BENCHMARKS.md) with what it was measured from, met or missed, or pending (not measured: a
CPU dry run, a skipped or failed step).

Budget: `--budget` (default 540 s) counts from gpu_check.sh's start (`GPU_CHECK_T0`), its install included; a step
is skipped, and recorded as skipped, when the time left is under what it takes on an H200. `targets` is rewritten
after every step. Paths come from `DPO_IMDB_GPT2_DIR` and `DPO_IMDB_DATA_DIR`.
"""
import argparse, gc, inspect, json, os, platform, shutil, statistics, subprocess, sys, time, traceback
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
# tokenizers keeps its default (all cores): SFT tokenizes 75,000 reviews, about 30 s on one core (bench/bench_setup.py)
for k, v in {'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1', 'TRANSFORMERS_OFFLINE': '1', 'WANDB_MODE': 'disabled',
             'TRANSFORMERS_VERBOSITY': 'error'}.items(): os.environ.setdefault(k, v)

import torch

T0 = float(os.environ.get('GPU_CHECK_T0') or time.time())   # gpu_check.sh's start: its install and imports count too


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
        self.results['targets'] = targets(self.results)          # as far as measured: a run killed later keeps them
        self.write()

    def write(self):
        "Replace the JSON file at once: a command killed while writing leaves the last whole copy."
        tmp = self.path.with_name(self.path.name + '.tmp')
        tmp.write_text(json.dumps(self.results, indent=1, default=str) + '\n')
        os.replace(tmp, self.path)


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
def code_commit() -> str | None:
    """The git commit of the code the check runs ('+changes': the tracked files differ from it); where the copy has no
    git history (a GPU machine's), the one `gpu_check.sh --prepare` recorded beside the carried files."""
    git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    try: return git('rev-parse', '--short', 'HEAD') + ('+changes' if git('status', '--porcelain', '-uno') else '')
    except (OSError, subprocess.CalledProcessError):
        recorded = ROOT/'.gpucheck'/'commit'
        return f'{recorded.read_text().strip()} (at --prepare)' if recorded.is_file() else None

def environment(args) -> dict:
    import transformers, trl, datasets, accelerate
    out = {'commit': code_commit(), 'python': platform.python_version(), 'torch': torch.__version__,
           'cuda': torch.version.cuda, 'transformers': transformers.__version__, 'trl': trl.__version__,
           'datasets': datasets.__version__, 'accelerate': accelerate.__version__, 'cpu_count': os.cpu_count(),
           'loadavg': os.getloadavg(),
           'c_compiler': shutil.which('cc') or shutil.which('gcc')}      # triton and inductor build their launchers with it
    from importlib.metadata import version, PackageNotFoundError
    for name in ('numpy', 'pyarrow', 'fsspec', 'huggingface_hub', 'pandas', 'scikit-learn'):   # datasets 5.2 asks
        try: out[name] = version(name)                                      # pyarrow>=24, fsspec<=2026.9, hub>=1.31:
        except PackageNotFoundError: out[name] = None                       # the image's own, not carried
    if torch.cuda.is_available():
        from dpo_imdb.models import compute_dtype
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), compute_capability=f'{p.major}.{p.minor}',
                   bf16=compute_dtype('auto', torch.device('cuda')) == torch.bfloat16,     # the runs' precision
                   sdpa_flash=torch.backends.cuda.flash_sdp_enabled())
    return out


def gpu_tests(args) -> dict:
    "Run the cells flagged `gpu` (and the ordinary cells they need) of every notebook that has some."
    notebooks = sorted(str(p) for p in (ROOT/'nbs').glob('*.ipynb') if '#| gpu' in p.read_text())
    results = {}
    for nb in notebooks:
        t0, left = time.time(), int(args.check.left())
        if left < 20:
            results[Path(nb).name] = {'passed': None, 'skipped': f'{left} s left'}; continue
        try:
            res = subprocess.run(['nbdev_test', '--flags', 'gpu', '--path', nb, '--do_print'], cwd=ROOT,
                                 capture_output=True, text=True, timeout=left)
            results[Path(nb).name] = {'passed': res.returncode == 0, 'seconds': round(time.time() - t0, 1),
                                      'output_tail': (res.stdout + res.stderr)[-1500:]}
        except subprocess.TimeoutExpired:
            results[Path(nb).name] = {'passed': None, 'skipped': f'stopped after {left} s, the time left'}
    ran = [r['passed'] for r in results.values() if r['passed'] is not None]
    return {'notebooks': results, 'all_passed': all(ran) if ran else None}


def config(args):
    "The `gpu` preset's config for this check (smoke-sized with --smoke, fp32 on the CPU with --cpu)."
    from dpo_imdb.config import from_preset, smoke
    cfg = from_preset('gpu', policy=os.environ['DPO_IMDB_GPT2_DIR'], data=os.environ['DPO_IMDB_DATA_DIR'],
                      out_dir=str(args.run_dir), wandb_mode='disabled')
    if args.smoke:                                   # rloo samples 4 completions of a prompt: a batch of 4, not 2
        cfg = replace(smoke(cfg), out_dir=str(args.run_dir), train_batch_size=4, frontier_steps=2, frontier_eval_every=2,
                      frontier_eval_prompts=2, frontier_bon_n=[1, 2])
    if args.cpu: cfg = replace(cfg, device='cpu', precision='fp32')
    return cfg


def preset(args) -> dict:
    from dpo_imdb.pipeline import STAGES, run_pipeline
    cfg = args.cfg
    t0 = time.perf_counter()
    run = run_pipeline(cfg, force=True)
    wall = time.perf_counter() - t0
    stages = {}
    for stage in STAGES:
        m = run.manifest(stage)
        stages[stage] = {k: m.get(k) for k in ('seconds', 'peak_rss_mb', 'peak_gpu_mb')} | {'counts': m['counts']}
    gen, setup = stages['generate'], stages['setup']
    gen['tokens_per_second'] = round(gen['counts']['n_tokens'] / gen['seconds'], 1)
    sft_seconds = setup['counts'].get('sft_seconds')
    if sft_seconds:
        setup['besides_sft_seconds'] = round(setup['seconds'] - sft_seconds, 2)
        setup['sft_tokens_per_second'] = round(cfg.sft_steps * cfg.sft_batch_size * cfg.sft_max_length / sft_seconds, 1)
    metrics = json.loads((run.path('evaluate')/'metrics.json').read_text())
    return {'config': {k: getattr(cfg, k) for k in ('n_train_prompts', 'n_eval_prompts', 'sft_steps', 'max_new_tokens',
                                                      'gen_batch_size', 'train_batch_size', 'precision', 'device',
                                                      'gen_decoder', 'sft_compile')},
            'reviews': _review_counts(cfg.data), 'wall_seconds': round(wall, 1),
            'stages': stages, 'total_stage_seconds': round(sum(s['seconds'] for s in stages.values()), 1),
            'metrics': metrics, 'scorers': json.loads((run.path('setup')/'scorers.json').read_text()),
            'samples_md': (run.path('evaluate')/'samples.md').read_text()[:3000]}


def _review_counts(data: str) -> dict:
    "Reviews per split of the parquet folder `data`: the pool SFT and the prompts draw from (train and unsup)."
    import pyarrow.parquet as pq
    return {f.stem: pq.ParquetFile(f).metadata.num_rows for f in sorted(Path(data).glob('*.parquet'))}


def _reference(args):
    from dpo_imdb.data import load_tokenizer
    from dpo_imdb.models import compute_dtype, load_policy, resolve_device
    run = Path(args.cfg.out_dir)
    device = resolve_device(args.cfg.device)
    tok = load_tokenizer(str(run/'setup'/'tokenizer'))
    return load_policy(str(run/'setup'/'reference'), tok, device=device), tok, compute_dtype(args.cfg.precision, device)


def sft(args) -> dict:
    "Tokens/s of `train_sft`'s loop (its tokenizing timed apart and taken out) at the preset's batch and length."
    import copy
    import pandas as pd
    from dpo_imdb.models import _review_stream, train_sft
    from torch._dynamo.utils import counters
    model, tok, dtype = _reference(args)
    cfg, steps = args.cfg, args.sft_steps
    texts = pd.read_parquet(Path(cfg.data)/'train.parquet', columns=['text'])['text'][:args.sft_texts].tolist()
    t0 = time.perf_counter(); _review_stream(tok, texts, cfg.sft_max_length); tokenize = time.perf_counter() - t0
    tokens = steps * cfg.sft_batch_size * cfg.sft_max_length
    def timed(m, n, compile):
        _sync(); t0 = time.perf_counter()
        train_sft(m, tok, texts, n, cfg.sft_lr, cfg.sft_batch_size, cfg.sft_max_length, dtype=dtype, progress=False,
                  compile=compile)
        _sync(); return time.perf_counter() - t0
    out = {'steps': steps, 'batch': cfg.sft_batch_size, 'length': cfg.sft_max_length, 'dtype': str(dtype),
           'tokenize_seconds': round(tokenize, 3)}
    for name, compile in (('eager', False), ('compiled', True)):
        if compile and args.cpu:
            out[name] = {'skipped': 'compiling GPT-2 124M on a CPU takes minutes; 01a_models checks compile on a tiny model'}
            continue
        m = copy.deepcopy(model)
        counters.clear()
        try:
            warm = timed(m, args.sft_warmup, compile)           # kernels, allocator; compiled: the compilation itself
            seconds = timed(m, steps, compile) - tokenize
        except Exception as e:                                  # an inductor failure: eager's numbers stand
            if not compile: raise
            traceback.print_exc(); out[name] = _error(e); del m; continue
        out[name] = {'warmup_seconds': round(warm, 2), 'seconds': round(seconds, 3),
                     'tokens_per_second': round(tokens / seconds, 1)}
        if compile:                  # the graphs dynamo made in both calls: 1 is one graph (no break), compiled once
            out[name].update(graphs=counters['stats']['unique_graphs'],
                             graph_breaks={str(k).splitlines()[0][:200]: v for k, v in counters['graph_break'].items()})
        del m
    n = args.sft_profile_steps                # one call of n steps on 256 reviews, its setup included: kernel time,
    m, few = copy.deepcopy(model), texts[:256]   # launches and syncs against the wall time
    call = lambda: train_sft(m, tok, few, n, cfg.sft_lr, cfg.sft_batch_size, cfg.sft_max_length, dtype=dtype, progress=False)
    out['profile_one_call'] = {'steps': n, **_profile(call, model.device.type == 'cuda')}
    return out
def _error(e: Exception) -> dict:
    "A failed profile's record, in place of its numbers."
    return {'error': f'{type(e).__name__}: {e}'[:500]}


def _profiler(cuda: bool):
    from torch.profiler import ProfilerActivity, profile
    return profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else []))


def _summary(prof, wall: float, cuda: bool, per: int = 1) -> dict:
    "A profile's wall time, device kernel time, launches, host syncs and top operations, each divided by `per`."
    events = prof.key_averages()
    count = lambda *names: round(sum(e.count for e in events if e.key in names) / per, 2)
    out = {'wall_seconds': round(wall / per, 4), 'aten_ops': round(sum(e.count for e in events if e.key.startswith('aten::')) / per, 2),
           'host_reads': count('aten::_local_scalar_dense', 'aten::nonzero'), 'cat': count('aten::cat')}
    if cuda:
        dev = lambda e: getattr(e, 'self_device_time_total', getattr(e, 'self_cuda_time_total', 0))
        out.update(kernel_seconds=round(sum(dev(e) for e in events if e.device_type.name == 'CUDA') / 1e6 / per, 4),
                   kernel_launches=round(sum(e.count for e in events if e.key.startswith(('cudaLaunchKernel', 'cuLaunchKernel')))
                                         / per, 2),                      # their Ex and versioned names (Triton's) too
                   graph_launches=count('cudaGraphLaunch'),
                   syncs=count('cudaStreamSynchronize', 'cudaDeviceSynchronize', 'cudaEventSynchronize'),
                   memcpy=count('cudaMemcpyAsync', 'cudaMemcpy'),
                   top=[(e.key, round(dev(e) / 1e3 / per, 2), round(e.count / per, 2))
                        for e in sorted(events, key=dev, reverse=True)[:8]])
    return out


def _profile(fn, cuda: bool) -> dict:
    """One call of `fn` under torch.profiler: wall time, device kernel time, launches, host syncs, the top operations.
    A profiler that fails (no CUPTI, say) gives `{'error': ...}`: the step's measurements stand without it."""
    fn()                                                                       # warm: a new decoder captures its graph
    try:
        _sync(); t0 = time.perf_counter()
        with _profiler(cuda) as prof: fn(); _sync()
        return _summary(prof, time.perf_counter() - t0, cuda)
    except Exception as e:
        traceback.print_exc(); return _error(e)


def _static_cache(model, caches: dict, rows: int, length: int):
    """`caches`' StaticCache for batches of `rows` (made once, then reset), as `generate`'s keyword: the same tensors
    call after call, so that a compiled forward's CUDA graph replays. `generate` itself makes a fresh cache per call,
    whose new addresses make the graph record again (torch re-records on a changed static address)."""
    from transformers import StaticCache
    if rows not in caches: caches[rows] = StaticCache(config=model.config, max_cache_len=length)
    caches[rows].reset()
    key = 'cache' if 'cache' in inspect.signature(model.forward).parameters else 'past_key_values'   # 5.x / before
    return {key: caches[rows]}


def hf_generate(model, tok, rows: list[list[int]], batch_size: int, width: int, max_new_tokens: int, dtype,
                record_logps: bool = False, static: bool = False, caches: dict | None = None) -> list[list[int]]:
    """The peer: transformers' `model.generate`, pure sampling, over `rows` left-padded to `width` in batches of
    `batch_size` (with a static cache if `static`: a fresh one per call, as `generate` makes it, or, given `caches`,
    one per batch size kept across calls), then (`record_logps`) the reference's log-probs that ours records; the
    completions, EOS (= pad for GPT-2) and what follows cut off."""
    from dpo_imdb.loss import completion_logps
    from dpo_imdb.models import autocast
    completions, parallelism = [], os.environ.get('TOKENIZERS_PARALLELISM')
    for i in range(0, len(rows), batch_size):
        batch = tok.pad({'input_ids': rows[i:i + batch_size]}, padding='max_length', max_length=width,
                        return_tensors='pt').to(model.device)                               # left padding
        cache = ({} if not static else {'cache_implementation': 'static'} if caches is None else
                 _static_cache(model, caches, len(batch['input_ids']), width + max_new_tokens))
        with torch.no_grad(), autocast(model.device, dtype):     # as generate runs (not inference_mode: compiled)
            out = model.generate(**batch, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                                 max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, **cache)
        if os.environ.get('TOKENIZERS_PARALLELISM') != parallelism:     # compiling, generate turns the tokenizers'
            if parallelism is None: del os.environ['TOKENIZERS_PARALLELISM']   # threads off for the whole process
            else: os.environ['TOKENIZERS_PARALLELISM'] = parallelism
        new = out[:, width:]
        lengths = (new != tok.pad_token_id).sum(1).tolist()                                # one read for the batch
        keep = [r[:n or 1] for r, n in zip(new.tolist(), lengths)]
        if record_logps: completion_logps(model, rows[i:i + batch_size], keep, batch_size, dtype)
        completions += keep
    return completions


def generation(args) -> dict:
    """Ours (`generate_completions` as the pipeline runs it: the fast decoder, log-probs recorded) against HF
    `model.generate` (plain, and with a static cache and its compiled forward), the same rows, interleaved repeats;
    then ours at the pipeline's batch of 1,024, and a profile of one batch of the eager loop and of ours."""
    from datasets import load_from_disk
    from dpo_imdb.generation import SamplingConfig, generate_completions, resolve_decoder
    model, tok, dtype = _reference(args)
    cuda = model.device.type == 'cuda'
    prompts = load_from_disk(str(Path(args.cfg.out_dir)/'prompts'/'dataset'))['train']
    n, T, B = 4, args.cfg.max_new_tokens, args.gen_batch
    part = prompts.select(range(args.gen_prompts))
    decoder = resolve_decoder('auto' if cuda else 'static', model)     # a CPU dry run takes the static path uncaptured
    sampling = SamplingConfig(n=n, max_new_tokens=T, batch_size=B, decoder=decoder)
    rows = [list(p) for p in part['prompt_ids'] for _ in range(n)]          # the same rows, prompt-major
    width = max(map(len, rows))                                             # every HF batch padded alike: one shape

    def ours(sampling=sampling, prompts=part):
        def go():
            ds = generate_completions(model, tok, prompts, sampling, dtype, progress=False)
            return {'tokens': sum(map(len, ds['completion_ids']))}
        return go

    # the peers' weights in the run's precision, no autocast: under autocast a compiled, graphed forward would cast
    # every matrix again at every step (no cast cache inside a graph), a cost a user loading bf16 weights never pays
    import copy
    peer, peer_dtype = (copy.deepcopy(model).to(torch.bfloat16), torch.float32) if dtype == torch.bfloat16 else (model, dtype)
    def hf(record_logps: bool, static: bool = False, caches: dict | None = None):
        return lambda: {'tokens': sum(map(len, hf_generate(peer, tok, rows, B, width, T, peer_dtype, record_logps, static,
                                                           caches)))}

    sides = {'ours': ours(), 'ours_eager': ours(replace(sampling, decoder='eager')), 'hf_generate': hf(False),
             'hf_generate+logps': hf(True), 'hf_static_compiled': hf(False, static=True),
             'hf_static_compiled_kept_cache': hf(False, static=True, caches={})}
    if cuda: sides['ours_compiled'] = ours(replace(sampling, decoder='compile'))   # inductor's fused kernels, then the graph
    warmup, errors = {}, {}
    for name, fn in list(sides.items()):                   # warm-up: kernels, the graph capture, HF's compilation
        _sync(); t0 = time.perf_counter()
        try: fn()
        except Exception as e:
            errors[name] = f'{type(e).__name__}: {e}'[:500]; del sides[name]; traceback.print_exc(); continue
        _sync(); warmup[name] = round(time.perf_counter() - t0, 2)
    timing = _median_runs(sides, args.repeats)
    for name, t in timing.items():
        t['tokens_per_second'] = round(statistics.median(r['tokens'] / r['seconds'] for r in t['runs']), 1)
    ratio = lambda peer: round(timing[peer]['median_seconds'] / timing['ours']['median_seconds'], 2) \
        if peer in timing and 'ours' in timing else None
    static_sides = [k for k in ('hf_static_compiled', 'hf_static_compiled_kept_cache') if k in timing]
    static_best = min(static_sides, key=lambda k: timing[k]['median_seconds'], default=None)   # the stronger one
    compared = {'rows': len(rows), 'batch': B, 'max_new_tokens': T, 'dtype': str(dtype), 'decoder': decoder,
                'peer_weights': str(next(peer.parameters()).dtype) + (', no autocast' if peer is not model else ''),
                'hf_static_compiled': {'compiled': hasattr(peer, '_compiled_call'),
                                       'how': "generate(cache_implementation='static'): transformers compiles the "
                                              "decoding forward itself on CUDA (torch.compile, mode reduce-overhead)"},
                'warmup_seconds': warmup, 'errors': errors, 'timing': timing,
                'speedup_vs_hf_generate': ratio('hf_generate'), 'speedup_vs_hf_generate_with_logps': ratio('hf_generate+logps'),
                'speedup_vs_hf_static_compiled': ratio(static_best) if static_best else None, 'hf_static_peer': static_best,
                'speedup_vs_hf_static_compiled_fresh_cache': ratio('hf_static_compiled'),
                'speedup_vs_hf_static_compiled_kept_cache': ratio('hf_static_compiled_kept_cache'),
                'speedup_vs_eager_loop': ratio('ours_eager'),
                'compiled_decoder_speedup_vs_ours': round(timing['ours']['median_seconds'] /
                                                          timing['ours_compiled']['median_seconds'], 2)
                                                    if {'ours', 'ours_compiled'} <= set(timing) else None}
    args.check.results['steps']['generation'] = {      # a command killed from here on keeps the comparison
        'ok': True, **compared, 'incomplete': 'killed after the timed comparison, before the run at batch 1,024 and the profiles'}
    args.check.results['targets'] = targets(args.check.results); args.check.write()
    big = prompts.select(range(args.big_prompts))
    big_sampling = replace(sampling, batch_size=args.big_batch)
    ours(big_sampling, big)()                                                                # its own decoder: warm up
    at_scale = _median_runs({'ours': ours(big_sampling, big)}, args.repeats)['ours']
    at_scale['tokens_per_second'] = round(statistics.median(r['tokens'] / r['seconds'] for r in at_scale['runs']), 1)
    one = prompts.select(range(max(1, B // n)))
    profile = {name: _profile(ours(replace(sampling, decoder=d), one), cuda) for name, d in (('eager', 'eager'), ('ours', decoder))}
    from dpo_imdb.generation import _DECODERS
    captured = [d.graph is not None for d in _DECODERS.get(model, {}).values()]     # a failed capture falls back
    return {**compared, 'graphs_captured': f'{sum(captured)} of {len(captured)} decoders',
            'at_scale': {'rows': len(big) * n, 'batch': args.big_batch, **at_scale},
            'profile_one_batch': {'rows': len(one) * n, **profile}}


def training(args) -> dict:
    import copy, tempfile
    from datasets import Dataset, load_from_disk
    from trl import DPOConfig, DPOTrainer
    from dpo_imdb.training import dpo_config, make_trainer
    model, tok, dtype = _reference(args)
    pairs = load_from_disk(str(Path(args.cfg.out_dir)/'triplets'/'pairs'))['train']
    steps, warmup, batch, profiled = args.train_steps, 2, args.cfg.train_batch_size, 3
    total = warmup + steps + profiled            # the profiled steps come after the timed ones (none of them logs)
    pairs = pairs.select(range(min(len(pairs), total * batch)))
    cfg = replace(args.cfg, max_steps=total, logging_steps=10, save_steps=10**6, eval_steps=10**6, warmup_ratio=0.0)
    marks, profiles, cuda = {}, {}, model.device.type == 'cuda'

    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    class Hook(TrainerCallback):
        "Times the optimizer steps after the warm-up ones, then profiles `profiled` more: launches and syncs per step."
        def __init__(self, name): self.name, self.prof = name, None
        def on_step_begin(self, args_, state, control, **kw):
            if state.global_step == warmup + steps:
                try: _sync(); self.prof = _profiler(cuda); self.prof.__enter__(); self.t0 = time.perf_counter()
                except Exception as e: self.prof, profiles[self.name] = None, _error(e)
        def on_step_end(self, args_, state, control, **kw):
            if state.global_step == warmup: _sync(); marks[self.name] = [time.perf_counter()]
            if state.global_step == warmup + steps: _sync(); marks[self.name].append(time.perf_counter())
            if state.global_step == total and self.prof is not None:
                try:
                    _sync(); wall = time.perf_counter() - self.t0; self.prof.__exit__(None, None, None)
                    profiles[self.name] = _summary(self.prof, wall, cuda, per=profiled)
                except Exception as e: profiles[self.name] = _error(e)

    out = {}
    with tempfile.TemporaryDirectory() as d:
        ours = make_trainer(copy.deepcopy(model), tok, pairs, None, cfg, Path(d)/'ours', progress=False, callbacks=[Hook('ours')])
        ours.args.save_strategy = 'no'
        ours.train()
        loss_ours = next(r['loss'] for r in ours.state.log_history if 'loss' in r)
        del ours
        gc.collect()                       # trl binds the policy's forward to it, a cycle: free it before trl's peak
        if torch.cuda.is_available(): torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
        peer_args = lambda name, **kw: DPOConfig(
            output_dir=str(Path(d)/name), beta=cfg.beta, max_length=cfg.max_length, max_steps=total,
            per_device_train_batch_size=batch, learning_rate=cfg.learning_rate, warmup_steps=0,
            bf16=dtype == torch.bfloat16, use_cpu=args.cpu, report_to='none', save_strategy='no', logging_steps=10,
            logging_first_step=True, gradient_checkpointing=False, disable_tqdm=True, **kw)
        # in memory, so that trl's precomputed log-probs are not cached beside the run's pairs for a later call
        text = Dataset.from_dict(pairs.select_columns(['prompt', 'chosen', 'rejected']).to_dict())
        peer = DPOTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(model), args=peer_args('trl'),
                          train_dataset=text, processing_class=tok, callbacks=[Hook('trl')])
        peer.remove_callback(PrinterCallback)              # no printed logs: the numbers are in the results
        peer.train()
        loss_trl = next(r['loss'] for r in peer.state.log_history if 'loss' in r)
        peak_trl = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        del peer; gc.collect()
        # trl's own way to skip the reference's forward in the steps: its log-probs computed over the data set first
        # (in the trainer's constructor), timed apart; ours records them while sampling, at no extra pass
        precompute = []
        class Precomputing(DPOTrainer):
            def _precompute_ref_logps(self, dataset, *a, **kw):
                _sync(); t0 = time.perf_counter(); res = super()._precompute_ref_logps(dataset, *a, **kw); _sync()
                precompute.append((time.perf_counter() - t0, len(dataset))); return res
        peer = Precomputing(model=copy.deepcopy(model), ref_model=None, train_dataset=text, processing_class=tok,
                            args=peer_args('trl_precomputed', precompute_ref_log_probs=True),
                            callbacks=[Hook('trl_precomputed')])
        peer.remove_callback(PrinterCallback)
        peer.train()
        del peer; gc.collect()
    for name in ('ours', 'trl', 'trl_precomputed'):
        a, b = marks[name]
        out[name] = {'seconds': round(b - a, 3), 'pairs_per_second': round(steps * batch / (b - a), 2)}
    seconds, rows = precompute[0]                           # its share for the timed steps' pairs
    out['trl_precomputed'].update(precompute_seconds=round(seconds, 3), precompute_rows=rows,
                                  seconds_with_precompute=round(out['trl_precomputed']['seconds'] + seconds * steps * batch / rows, 3))
    out['speedup_vs_trl'] = round(out['trl']['seconds'] / out['ours']['seconds'], 2)
    out['speedup_vs_trl_precomputed'] = round(out['trl_precomputed']['seconds_with_precompute'] / out['ours']['seconds'], 2)
    out['speedup_vs_stronger_trl'] = min(out['speedup_vs_trl'], out['speedup_vs_trl_precomputed'])
    out['step1_loss'] = {'ours': loss_ours, 'trl': loss_trl,
                         'note': "trl re-tokenizes the text (appends EOS), so its sequences differ slightly from ours"}
    out.update(steps=steps, batch=batch, dtype=str(dtype), trl_peak_gpu_mb=peak_trl,
               profile_per_step={'steps': profiled, **profiles})
    return out


def rloo(args) -> dict:
    """Online RL on the preset's reference, the training scorer as reward, KL coefficient 0.05: `rloo_train` for
    `--rl-steps` steps of the preset's batch, after 2 warm-up steps; trl's `RLOOTrainer` for `--rl-trl-steps` steps of the
    same size (its own generation) beside it."""
    import copy, tempfile
    from datasets import load_from_disk
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import RLOOConfig, RLOOTrainer
    from dpo_imdb.frontier import rloo_train
    from dpo_imdb.scoring import load_scorer
    from dpo_imdb.training import NO_CHECKPOINTING
    model, tok, dtype = _reference(args)
    cfg, run = args.cfg, Path(args.cfg.out_dir)
    scorer = load_scorer(str(run/'setup'/'scorer'), device=model.device)
    prompts = load_from_disk(str(run/'prompts'/'dataset'))['train']
    k, B, kl_coef = cfg.completions_per_prompt, cfg.train_batch_size, 0.05
    reward = lambda samples: scorer(samples['completion']).probs.tolist()
    policy = copy.deepcopy(model)
    def ours(steps):
        with torch.no_grad():              # the reference's weights again, copied in place: the decode graph that the
            for p, q in zip(policy.parameters(), model.parameters()): p.copy_(q)   # warm-up captured stays valid
        _sync(); t0 = time.perf_counter()
        rows = rloo_train(policy, model, tok, prompts, reward, kl_coef, steps, cfg.learning_rate, B, k, cfg.max_new_tokens,
                          dtype, cfg.seed)
        _sync(); return time.perf_counter() - t0, rows
    warm, _ = ours(2)                                                     # kernels, the decode graph's capture
    seconds, rows = ours(args.rl_steps)
    out = {'batch': B, 'completions_per_prompt': k, 'max_new_tokens': cfg.max_new_tokens, 'kl_coef': kl_coef,
           'dtype': str(dtype), 'ours': {'steps': args.rl_steps, 'warmup_seconds': round(warm, 2),
                                         'seconds': round(seconds, 2), 'seconds_per_step': round(seconds / args.rl_steps, 4),
                                         'reward_first_step': rows[0]['reward'], 'reward_last_step': rows[-1]['reward'],
                                         'kl_last_step': rows[-1]['kl']}}
    marks = []
    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw): _sync(); marks.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as d:
        trl_args = RLOOConfig(output_dir=d, use_cpu=args.cpu, bf16=dtype == torch.bfloat16, report_to='none',
                              per_device_train_batch_size=B, num_generations=k, max_completion_length=cfg.max_new_tokens,
                              temperature=1.0, top_k=0, top_p=1.0, beta=kl_coef, learning_rate=cfg.learning_rate,
                              max_steps=args.rl_trl_steps + 1, disable_dropout=True, save_strategy='no',
                              logging_steps=10**6, disable_tqdm=True, **NO_CHECKPOINTING)
        trainer = RLOOTrainer(model=str(run/'setup'/'reference'), reward_funcs=lambda completions, **kw: reward(
            {'completion': completions}), args=trl_args, processing_class=tok,
            train_dataset=prompts.select_columns(['prompt']), callbacks=[Clock()])
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    per_step = (marks[-1] - marks[0]) / (len(marks) - 1)                 # after its first step
    out['trl'] = {'steps_timed': len(marks) - 1, 'seconds_per_step': round(per_step, 4),
                  'seconds_for_ours_steps': round(per_step * args.rl_steps, 2)}
    out['speedup_per_step_vs_trl'] = round(per_step / out['ours']['seconds_per_step'], 2)
    return out


def frontier(args) -> dict:
    """`dpo-imdb frontier` with the preset's config in a subprocess with its own budget: the points and the figure, or
    the runs that finished in time (it resumes: a second call continues where the first stopped)."""
    from dpo_imdb.config import save_config
    from dpo_imdb.frontier import dominance, frontier_runs
    cfg, runs = args.cfg, frontier_runs(args.cfg)
    config_file = save_config(cfg, Path(cfg.out_dir).parent/'frontier_config.json')
    root = Path(cfg.out_dir)/'frontier'
    log_file, partial = Path(cfg.out_dir).parent/'frontier.log', args.out/'frontier_points_partial.json'
    t0, timed_out, copied = time.time(), False, None
    seconds = max(60, min(args.frontier_budget, args.check.left()))
    deadline = t0 + seconds                     # the frontier skips the runs that would end later than 20 s before it
    with open(log_file, 'w') as log_out:
        proc = subprocess.Popen([sys.executable, '-m', 'dpo_imdb.cli', 'frontier', '--config', str(config_file),
                                 '--budget', f'{seconds - 20:.0f}'],
                                cwd=ROOT, stdout=log_out, stderr=subprocess.STDOUT, text=True)
        try:
            while proc.poll() is None:          # each finished run's points reach OUT at once, so that a command
                if time.time() > deadline:      # stopped from outside (a limit on the command) still returns them
                    timed_out = True
                    break
                time.sleep(2)
                points = root/'points.json'
                if points.exists() and points.stat().st_mtime != copied:
                    copied = points.stat().st_mtime
                    shutil.copyfile(points, partial)
        finally:
            if proc.poll() is None: proc.kill(); proc.wait()
    log, code = log_file.read_text(), None if timed_out else proc.returncode
    points_file = root/'points.json'            # rewritten as each run of this call ends, reused runs included
    points = json.loads(points_file.read_text()) if points_file.exists() else None
    now = points if points is not None and points_file.stat().st_mtime >= t0 else []      # [] if from an earlier call
    in_call = {p['run'] for p in now} | {p['method'] for p in now}      # best_of_n's points are named per N
    finished = {r.name: json.loads((root/'runs'/r.name/'result.json').read_text()) for r in runs if r.name in in_call}
    out = {'seconds': round(time.time() - t0, 1), 'timed_out': timed_out, 'returncode': code,
           'runs_finished': {name: {'seconds': r['seconds'], 'points': len(r['points'])} for name, r in finished.items()},
           'log_tail': '\n'.join(l for l in log.splitlines() if 'frontier' in l and ' see ' not in l)[-3000:]}   # no paths
    summary = json.loads((root/'summary.json').read_text()) if code == 0 and (root/'summary.json').exists() else {}
    if summary.get('complete'):
        for stale in (partial, args.out/'frontier_partial.png', args.out/'frontier_table_partial.md'):
            stale.unlink(missing_ok=True)
        for name, dest in (('points.json', 'frontier_points.json'), ('frontier.png', 'frontier.png'),
                           ('table.md', 'frontier_table.md')):
            shutil.copyfile(root/name, args.out/dest)
        stages = [json.loads((Path(cfg.out_dir)/st/'manifest.json').read_text())['seconds']
                  for st in ('setup', 'prompts', 'generate', 'score', 'triplets')]
        out.update(complete=True, summary=summary, stages_seconds=round(sum(stages), 1),
                   from_scratch_seconds=round(sum(stages) + summary['seconds_in_runs'], 1), dpo_dominates=dominance(points),
                   dpo_dominates_independent=dominance(points, key='independent_reward'))
    else:                                               # runs skipped by its budget, or stopped from outside
        out.update(complete=False, runs_skipped=summary.get('skipped'),
                   incomplete=f"{len(finished)} of {len(runs)} runs finished in the time given")
        if points is not None:                          # the points of the runs it finished (run_frontier keeps them)
            from dpo_imdb.evaluation import plot_frontier
            shutil.copyfile(points_file, partial)
            if summary:                                 # stopped by its budget: it drew the figure and table itself
                shutil.copyfile(root/'table.md', args.out/'frontier_table_partial.md')
                shutil.copyfile(root/'frontier.png', args.out/'frontier_partial.png')
            else: plot_frontier(points, args.out/'frontier_partial.png', title=f'{cfg.name}: the runs finished in time')
            out['partial'] = {'points': len(points), 'methods': sorted({p['method'] for p in points}),
                              'dpo_dominates': dominance(points),
                              'dpo_dominates_independent': dominance(points, key='independent_reward')}
    if not out['complete'] and code not in (0, None): raise RuntimeError(f'dpo-imdb frontier failed ({code}):\n{log[-2000:]}')
    return out


HF_SIDES = "same rows, weights in the run's precision, interleaved repeats"
TARGETS = [   # name, (step, how the value is read), target, direction[, the peer]
    ('generation: ours / HF generate, same rows (x)', ('generation', lambda s: s['speedup_vs_hf_generate']), 4.0, '>=',
     f'HF model.generate, {HF_SIDES}'),
    ('generation: ours / HF generate with a static cache, compiled (x)',
     ('generation', lambda s: s['speedup_vs_hf_static_compiled'] if s['hf_static_compiled']['compiled'] else None), 1.5, '>=',
     "HF model.generate with a static cache, its forward compiled by transformers: the faster of a fresh cache per "
     f"call (cache_implementation='static') and one StaticCache kept and reset, {HF_SIDES}"),
    ('generation: tokens/s at batch 1024 x 48 new tokens', ('generation', lambda s: s['at_scale']['tokens_per_second']),
     300_000, '>='),
    ('SFT: tokens/s of the training loop (the faster of eager and compiled)',
     ('sft', lambda s: max(s[k]['tokens_per_second'] for k in ('eager', 'compiled') if 'tokens_per_second' in s[k])),
     400_000, '>='),
    ('DPO training: ours / trl DPOTrainer, pairs/s (x; the faster of trl with a reference model and trl with its '
     'reference log-probs precomputed, their pass included)', ('training', lambda s: s['speedup_vs_stronger_trl']), 2.0, '>='),
    ('the gpu preset end to end (s, the whole run_pipeline call)', ('preset', lambda s: s['wall_seconds']), 100, '<='),
    ('the gpu preset: setup besides SFT (s)', ('preset', lambda s: s['stages']['setup']['besides_sft_seconds']), 15, '<='),
    ('RLOO: 150 steps at batch 64 (s)', ('rloo', lambda s: s['ours']['seconds'] if s['ours']['steps'] == 150 else None),
     20, '<='),
    ('the frontier of the gpu preset, all 8 methods, from scratch (s: its stages and runs)',
     ('frontier', lambda s: s['from_scratch_seconds'] if s['complete'] else None), 900, '<='),
]


def targets(results: dict) -> dict:
    "Each target: the measured value, and met / missed (with the GPU's name if not an H200), or pending with the reason."
    out, gpu = {}, results['steps'].get('environment', {}).get('gpu', '')
    for name, (step, read), target, op, *peer in TARGETS:
        s = results['steps'].get(step)
        row = {'target': target, 'direction': op, 'from': f'step {step!r}'}
        if s is not None and s.get('ok'):
            try: row['measured'] = read(s)
            except (KeyError, TypeError, ValueError): pass
        if results['mode'] == 'cpu' or results['smoke']:
            row['status'] = 'pending: a CPU or smoke dry run measures no GPU target'
        elif s is None or 'skipped' in s or not s.get('ok'):
            row['status'] = f"pending: step {step!r} " + ('did not run' if s is None else 'was skipped' if 'skipped' in s
                                                           else 'failed')
        elif row.get('measured') is None:
            row['status'] = f'pending: step {step!r} did not measure it' + (f" ({s['incomplete']})" if 'incomplete' in s else '')
        else:
            value = row['measured']
            row['status'] = 'met' if (value >= target if op == '>=' else value <= target) else 'missed'
            if 'H200' not in gpu: row['status'] += f" on {gpu or 'an unnamed GPU'}, not the H200 the targets are set for"
        if peer and row.get('measured') is not None: row['peer'] = peer[0]
        out[name] = row
    return out


STEPS = ('environment', 'preset', 'generation', 'training', 'rloo', 'sft', 'gpu_tests', 'frontier')   # in this order


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--cpu', action='store_true', help='run on the CPU in fp32 (a dry run of this script)')
    p.add_argument('--smoke', action='store_true', help='the smoke size of the preset and tiny benchmarks')
    p.add_argument('--out', type=Path, default=Path(os.environ.get('OUT', ROOT/'bench'/'gpu_check_out')))
    p.add_argument('--run-dir', type=Path, default=ROOT/'bench'/'gpu_check_out'/'run',
                   help="the preset's run directory (git-ignored; a later call on the same machine reuses its stages)")
    p.add_argument('--budget', type=float, default=540.0, help='seconds for the whole check')
    p.add_argument('--frontier', action='store_true', help='also run the frontier step, after the others')
    p.add_argument('--frontier-budget', type=float, default=900.0, help="seconds for the frontier step's command")
    p.add_argument('--only', help=f"comma-separated steps to run, of {', '.join(STEPS)} (environment always runs)")
    p.add_argument('--skip-tests', action='store_true')
    args = p.parse_args()
    for var in ('DPO_IMDB_GPT2_DIR', 'DPO_IMDB_DATA_DIR'):
        if not os.environ.get(var): sys.exit(f'gpu_check: set {var} (see bench/gpu_check.sh)')
    chosen = set(args.only.split(',')) if args.only else set(STEPS) - ({'frontier'} if not args.frontier else set())
    if args.cpu or args.skip_tests: chosen.discard('gpu_tests')
    unknown = chosen - set(STEPS)
    if unknown: sys.exit(f"gpu_check: unknown step(s) {', '.join(sorted(unknown))}: choose from {', '.join(STEPS)}")
    small = args.smoke or args.cpu
    args.gen_prompts, args.gen_batch, args.repeats, args.train_steps = (8, 8, 1, 2) if small else (512, 512, 3, 20)
    args.big_prompts, args.big_batch = (8, 16) if small else (1024, 1024)
    args.sft_steps, args.sft_warmup, args.sft_texts = (3, 1, 200) if small else (200, 20, 5000)
    args.sft_profile_steps = 2 if small else 20
    args.rl_steps, args.rl_trl_steps = (2, 1) if small else (150, 10)
    args.check = Check(args.out/'gpu_check.json', args.budget)
    args.check.results.update(mode='cpu' if args.cpu else 'gpu', smoke=args.smoke, steps_chosen=sorted(chosen),
                              started=time.strftime('%Y-%m-%dT%H:%M:%S'))
    args.cfg = config(args)
    args.check.step('environment', lambda: environment(args))
    # about what each step takes on an H200 (the preset: 262 s measured; generation: two compilations and six sides):
    # a step that would not end before the budget is skipped, so that one killed mid-way loses no later step
    needs = {'preset': 200, 'generation': 150, 'training': 40, 'rloo': 60, 'sft': 90, 'gpu_tests': 90, 'frontier': 120}
    if small: needs = dict.fromkeys(needs, 0)
    for name in STEPS[1:]:
        if name in chosen: args.check.step(name, lambda name=name: globals()[name](args), needs=needs[name])
    steps = args.check.results['steps']                  # each step wrote its results and the targets as it ended
    failed = [k for k, v in steps.items() if not v.get('ok', True) or v.get('all_passed') is False]
    print('\n'.join(f"{name}: {t.get('measured', '-')} (target {t['direction']} {t['target']:g}): {t['status']}"
                    for name, t in args.check.results['targets'].items()))
    print(f"gpu_check: {len(steps)} steps in {time.time() - T0:.0f} s; failed: {failed or 'none'}; results in {args.check.path}")
    sys.exit(1 if failed else 0)


if __name__ == '__main__': main()
