"""DPO training throughput and memory: preference pairs per second and peak RSS, ours vs trl's `DPOTrainer`.

`gpt2`-shaped policy (random weights: real compute and memory), batch 8 pairs, sequences up to 128 tokens,
`--steps` timed optimizer steps after `--warmup` warm-up steps, fp32 on the CPU, same learning rate and schedule.

- ours:  `dpo_imdb.training.make_trainer` (the `train_dpo` path, `RunConfig.ref_logps='recorded'`): trains on the
         triplets' token ids and their recorded reference log-probs, so no reference model exists in the process.
- trl:   `DPOTrainer(model, ref_model=deepcopy(model), args=DPOConfig(use_cpu=True, bf16=False, report_to='none',
         per_device_train_batch_size=8, max_length=128, ...), train_dataset=<text triplets>)`: trl's defaults, which
         include `gradient_checkpointing=True` and a reference forward pass every step.
- trl no-ckpt: the same with `gradient_checkpointing=False` (the same compute per step as ours plus the reference
         forward): separates the cost of the reference model from that of trl's checkpointing default.

Same inputs: triplets come from the project's own path (real IMDb prompts -> `generate_completions` from the policy,
4 samples -> `score_completions` with a TF-IDF scorer fitted on real reviews -> `make_triplets`). trl gets them as
text (prompt, chosen, rejected). trl re-tokenizes text and appends EOS, so ours gets exactly trl's token ids (made by
trl's own `_prepare_dataset`), and the reference log-probs of those ids from one batched teacher-forced pass of the
initial policy (what `generate_completions` records while sampling; the recorded-vs-teacher-forced difference on
the sampled ids is printed). Both sides therefore train on identical sequences, and must give the same loss (and
log-probs) at step 1 within 1e-4.

Each side runs in its own subprocess (peak RSS is per process: `VmHWM` read by the worker at the end of its last
step; `ru_maxrss` from `os.wait4` is recorded too, and the data are prepared in a third subprocess so that the
parent stays small: Linux carries a parent's peak into a child's `ru_maxrss`). The subprocesses run in lock-step: one optimizer step of ours,
one of trl, one of ours..., so machine load hits every side alike; only one computes at any time.
"""
import copy, hashlib, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
from _common import *

MMAP = {'MALLOC_MMAP_THRESHOLD_': '131072'}   # glibc: tensors >= 128 KiB always mmapped, so freed ones go back to the OS
SIDES = {   # name: (trainer, overrides: RunConfig fields for ours, DPOConfig fields for trl, extra environment of the worker)
    'ours': ('ours', {}, {}),
    'ours+ckpt': ('ours', {'activation_checkpointing': True}, {}),
    'ours+mmap': ('ours', {}, MMAP),
    'ours+ckpt+mmap': ('ours', {'activation_checkpointing': True}, MMAP),
    'trl': ('trl', {}, {}),
    'trl-nockpt': ('trl', {'activation_checkpointing': False}, {}),
    'trl+mmap': ('trl', {}, MMAP),
}


# -- data -----------------------------------------------------------------------------------------------------------------
def _trl_tokenize(text_ds, tok, max_length: int):
    "trl's own tokenization of text triplets (DPOTrainer._prepare_dataset: EOS appended, common prefix)."
    from types import SimpleNamespace
    from trl import DPOConfig, DPOTrainer
    args = DPOConfig(output_dir=tempfile.mkdtemp(), max_length=max_length, use_cpu=True, bf16=False, report_to='none')
    return DPOTrainer._prepare_dataset(SimpleNamespace(_tokenizer=tok), text_ds, tok, args, 'train')


def ids_hash(ds) -> str:
    h = hashlib.sha256()
    for k in ('prompt_ids', 'chosen_ids', 'rejected_ids'): h.update(repr(list(map(list, ds[k]))).encode())
    return h.hexdigest()[:16]


def prepare(data_dir: Path, n_prompts: int, max_new_tokens: int, max_length: int) -> dict:
    "Triplets from the project's path; save `peer` (text) and `ours` (trl's ids + reference log-probs) datasets."
    import numpy as np
    from datasets import Dataset
    from dpo_imdb.generation import SamplingConfig, generate_completions
    from dpo_imdb.loss import completion_logps
    from dpo_imdb.scoring import TfidfScorer, score_completions
    from dpo_imdb.triplets import make_triplets
    model, tok = gpt2_shape()
    prompts = imdb_prompts(tok, n_prompts)
    t0 = time.perf_counter()
    completions = generate_completions(model, tok, prompts, SamplingConfig(n=4, max_new_tokens=max_new_tokens, batch_size=64), progress=False)
    gen_s = time.perf_counter() - t0
    reviews = imdb_reviews('test').shuffle(seed=1).select(range(2000))
    scored, _ = score_completions(TfidfScorer.fit(reviews['text'], reviews['label']), completions, progress=False)
    triplets, stats = make_triplets(scored, pairing='all_pairs')
    # recorded (while sampling) vs teacher-forced reference log-probs of the sampled ids
    tf = completion_logps(model, list(map(list, triplets['prompt_ids'])), list(map(list, triplets['chosen_ids'])))
    rec_diff = float(np.abs(tf.double().numpy() - np.asarray(triplets['ref_chosen_logps'])).max())
    text = triplets.select_columns(['prompt', 'chosen', 'rejected'])
    tokenized = _trl_tokenize(text, tok, max_length)
    ok = [i for i, (p, c, r) in enumerate(zip(*(tokenized[k] for k in ('prompt_ids', 'chosen_ids', 'rejected_ids'))))
          if len(p) + max(len(c), len(r)) <= max_length]
    text, tokenized = text.select(ok), tokenized.select(ok)
    cols = {k: list(map(list, tokenized[k])) for k in ('prompt_ids', 'chosen_ids', 'rejected_ids')}
    ref_c = completion_logps(model, cols['prompt_ids'], cols['chosen_ids']).double().tolist()
    ref_r = completion_logps(model, cols['prompt_ids'], cols['rejected_ids']).double().tolist()
    ours = Dataset.from_dict({**cols, 'ref_chosen_logps': ref_c, 'ref_rejected_logps': ref_r})
    text.save_to_disk(str(data_dir / 'peer')); ours.save_to_disk(str(data_dir / 'ours'))
    lengths = [len(p) + len(c) for p, c in zip(cols['prompt_ids'], cols['chosen_ids'] + cols['rejected_ids'])]
    lengths += [len(p) + len(r) for p, r in zip(cols['prompt_ids'], cols['rejected_ids'])]
    return {'n_pairs': len(ours), 'generation_seconds': gen_s, 'max_abs_recorded_vs_teacher_forced': rec_diff,
            'seq_tokens_mean': float(np.mean(lengths)), 'seq_tokens_max': int(max(lengths)), 'ids_hash': ids_hash(ours),
            'triplet_stats': vars(stats)}


# -- worker (one side, one subprocess) -----------------------------------------------------------------------------------
def worker(side: str, data_dir: Path, steps: int, lr: float, batch: int, max_length: int, out: Path):
    proto = os.fdopen(os.dup(1), 'w', buffering=1)        # the lock-step protocol; everything else goes to stderr
    os.dup2(2, 1)
    import torch
    from datasets import load_from_disk
    from transformers import TrainerCallback
    rss = {'import': peak_rss_mb()}
    model, tok = gpt2_shape()
    rss['model'] = peak_rss_mb()
    tmp = tempfile.mkdtemp(prefix=f'bench-{side}-')
    kind, overrides, _ = SIDES[side]
    if kind == 'ours':
        from dpo_imdb.config import from_preset
        from dpo_imdb.training import make_trainer
        ds = load_from_disk(str(data_dir / 'ours'))
        cfg = from_preset('colab', train_batch_size=batch, max_length=max_length, max_steps=steps, learning_rate=lr,
                          warmup_ratio=0.0, logging_steps=1, eval_steps=10**6, save_steps=10**6, device='cpu',
                          precision='fp32', wandb_mode='disabled', out_dir=tmp, **overrides)
        trainer = make_trainer(model, tok, ds, None, cfg, out_dir=tmp, progress=False)
        trainer.args.save_strategy = 'no'               # checkpoints are for resuming, outside the timed steps
    else:
        from trl import DPOConfig, DPOTrainer
        ref_model = copy.deepcopy(model)
        args = DPOConfig(output_dir=tmp, use_cpu=True, bf16=False, report_to='none', per_device_train_batch_size=batch,
                         max_length=max_length, max_steps=steps, learning_rate=lr, logging_steps=1, save_strategy='no',
                         disable_tqdm=True, seed=0, **overrides)
        trainer = DPOTrainer(model, ref_model=ref_model, args=args, train_dataset=load_from_disk(str(data_dir / 'peer')),
                             processing_class=tok)
    rss['setup'] = peak_rss_mb()
    times, log_list = [], []

    class Lockstep(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            proto.write(f'ready {state.global_step + 1}\n')
            if sys.stdin.readline().strip() != 'go': raise SystemExit('lock-step protocol broken')
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t0)
            rss['last_step'] = peak_rss_mb()
            if state.global_step == 1: rss['step1'] = rss['last_step']
            proto.write(f'done {state.global_step} {times[-1]:.3f}\n')

        def on_log(self, args, state, control, logs=None, **kw):
            log_list.append({'step': state.global_step, **(logs or {})})

    trainer.add_callback(Lockstep())
    trainer.train()
    result = {'side': side, 'step_seconds': times, 'rss_mb': rss, 'logs': log_list, 'ids_hash': ids_hash(trainer.train_dataset),
              'gradient_checkpointing': bool(trainer.args.activation_checkpointing), 'has_ref_model': trainer.ref_model is not None,
              'torch_threads': torch.get_num_threads()}
    out.write_text(json.dumps(result, default=float))
    shutil.rmtree(tmp, ignore_errors=True)
    proto.write('finished\n')


# -- parent ---------------------------------------------------------------------------------------------------------------
def lockstep(sides: list[str], data_dir: Path, args, work: Path, rep: int) -> dict:
    "Start one worker per side, run their steps alternately (ours, trl, ... then the reverse order), collect results."
    procs, logs = {}, {}
    for side in sides:
        logs[side] = open(work / f'{side}-{rep}.log', 'w')
        cmd = [sys.executable, __file__, '--worker', side, '--data', str(data_dir), '--steps', str(args.warmup + args.steps),
               '--lr', str(args.lr), '--batch', str(args.batch), '--max-length', str(args.max_length),
               '--threads', str(args.threads), '--result', str(work / f'{side}-{rep}.json')]
        procs[side] = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[side], text=True,
                                       bufsize=1, env={**os.environ, **SIDES[side][2]})

    def expect(side, word):
        line = procs[side].stdout.readline()
        if not line.startswith(word):
            procs[side].kill()
            raise RuntimeError(f'{side} worker said {line!r}, expected {word!r}; see {logs[side].name}:\n'
                               + Path(logs[side].name).read_text()[-3000:])
        return line.split()

    load_per_step = []
    for step in range(args.warmup + args.steps):
        order = sides if step % 2 == 0 else sides[::-1]
        for side in order:
            expect(side, 'ready'); procs[side].stdin.write('go\n'); procs[side].stdin.flush()
            _, _, dt = expect(side, 'done')
            print(f'    step {step + 1:3d} {side:11s} {float(dt):7.2f} s (load {load()})', flush=True)
        load_per_step.append(load())
    results = {}
    for side in sides:
        expect(side, 'finished'); procs[side].stdin.close()
        _, status, usage = os.wait4(procs[side].pid, 0)
        if status: raise RuntimeError(f'{side} worker exited with status {status}; see {logs[side].name}')
        results[side] = {**json.loads((work / f'{side}-{rep}.json').read_text()), 'wait4_maxrss_mb': usage.ru_maxrss / 1024}
        logs[side].close()
    return {'sides': results, 'load_per_step': load_per_step}


def first_log(res: dict, key: str, step: int = 1):
    return next((l[key] for l in res['logs'] if l['step'] == step and key in l), None)


def compact_logs(reps: list[dict], full_steps: int = 3) -> None:
    "Keep every metric of the first `full_steps` logged steps and the loss of every step: the file stays small."
    for rep in reps:
        for res in rep['sides'].values():
            res['loss_per_step'] = [l['loss'] for l in res['logs'] if 'loss' in l]   # not the end-of-training summary
            res['logs'] = [l for l in res['logs'] if l['step'] <= full_steps]


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--steps', type=int, default=20, help='timed optimizer steps')
    p.add_argument('--warmup', type=int, default=2, help='untimed optimizer steps first')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--max-length', type=int, default=128)
    p.add_argument('--lr', type=float, default=5e-6)
    p.add_argument('--prompts', type=int, default=16, help='prompts x 4 samples -> all_pairs triplets')
    p.add_argument('--max-new-tokens', type=int, default=48)
    p.add_argument('--sides', default='ours,trl', help=f"sides to run, the first is compared with the others; among "
                                                        f"{', '.join(SIDES)}")
    p.add_argument('--keep', action='store_true', help='keep the work folder (data, worker logs)')
    p.add_argument('--worker', help=argparse.SUPPRESS)
    p.add_argument('--data', help=argparse.SUPPRESS)
    p.add_argument('--result', help=argparse.SUPPRESS)
    p.add_argument('--prepare', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.prepare:
        set_threads(args.threads)
        data = prepare(Path(args.prepare), args.prompts, args.max_new_tokens, args.max_length)
        return (Path(args.prepare) / 'prepared.json').write_text(json.dumps(data, default=float))
    if args.worker:
        set_threads(args.threads)
        return worker(args.worker, Path(args.data), args.steps, args.lr, args.batch, args.max_length, Path(args.result))
    if args.quick: args.steps, args.warmup, args.prompts, args.max_new_tokens, args.repeats = 2, 1, 4, 16, 1
    need_shared(); set_threads(args.threads)
    sides = [s for s in args.sides.split(',') if s]
    if unknown := set(sides) - set(SIDES): sys.exit(f'unknown sides {unknown}: choose among {list(SIDES)}')
    work = Path(tempfile.mkdtemp(prefix='bench-training-'))
    info = machine()
    banner('training', info, batch=args.batch, max_length=args.max_length, steps=args.steps, warmup=args.warmup,
           sides='/'.join(sides), repeats=args.repeats)
    subprocess.run([sys.executable, __file__, '--prepare', str(work / 'data'), '--prompts', str(args.prompts),
                    '--max-new-tokens', str(args.max_new_tokens), '--max-length', str(args.max_length),
                    '--threads', str(args.threads)], check=True, stdout=sys.stderr)
    data = json.loads((work / 'data' / 'prepared.json').read_text())
    print(f"  data: {data['n_pairs']} pairs, sequences {data['seq_tokens_mean']:.1f} tokens on average (max "
          f"{data['seq_tokens_max']}); recorded vs teacher-forced reference log-probs of the sampled ids: max "
          f"|diff| {data['max_abs_recorded_vs_teacher_forced']:.2e}", flush=True)
    reps = []
    for rep in range(args.repeats):
        print(f'  repeat {rep}', flush=True)
        reps.append(lockstep(sides, work / 'data', args, work, rep))

    def timed_steps(res): return res['step_seconds'][args.warmup:]
    summary = {}
    for side in sides:
        per_rep = [r['sides'][side] for r in reps]
        pairs_per_s = [args.batch * len(timed_steps(r)) / sum(timed_steps(r)) for r in per_rep]
        step_median = [median(timed_steps(r)) for r in per_rep]
        summary[side] = {'pairs_per_s': {'median': median(pairs_per_s), 'runs': pairs_per_s},
                         'median_step_seconds': {'median': median(step_median), 'runs': step_median},
                         'peak_rss_mb': {'median': median([r['rss_mb']['last_step'] for r in per_rep]),
                                         'runs': [r['rss_mb']['last_step'] for r in per_rep]},
                         'wait4_maxrss_mb': [r['wait4_maxrss_mb'] for r in per_rep],
                         'rss_after_setup_mb': [r['rss_mb']['setup'] for r in per_rep],
                         'step1': {k: first_log(per_rep[0], k) for k in ('loss', 'logps/chosen', 'logps/rejected')},
                         'loss_steps_1_3': [first_log(per_rep[0], 'loss', s) for s in (1, 2, 3)],
                         'ids_hash': per_rep[0]['ids_hash'], 'gradient_checkpointing': per_rep[0]['gradient_checkpointing'],
                         'has_ref_model': per_rep[0]['has_ref_model']}
    o = summary[sides[0]]
    for s in summary.values():                                         # the table's ratio columns
        s['first_x_speed'] = o['pairs_per_s']['median'] / s['pairs_per_s']['median']
        s['first_over_its_rss'] = o['peak_rss_mb']['median'] / s['peak_rss_mb']['median']
    rows = []
    for side, s in summary.items():
        rows.append([side, s['pairs_per_s']['median'], s['median_step_seconds']['median'], s['peak_rss_mb']['median'],
                     o['pairs_per_s']['median'] / s['pairs_per_s']['median'], o['peak_rss_mb']['median'] / s['peak_rss_mb']['median'],
                     f"{s['step1']['loss']:.6f}", f"{s['step1']['logps/chosen']:.4f}"])
    print(table(['side', 'pairs/s (median)', 'step s (median)', 'peak RSS MiB', f'{sides[0]} x speed', f'{sides[0]} / its RSS',
                 'loss step 1', 'logps/chosen step 1'], rows))
    checks = {}
    for side in sides[1:]:
        s = summary[side]
        checks[side] = {'speedup': o['pairs_per_s']['median'] / s['pairs_per_s']['median'],
                        'rss_ratio': o['peak_rss_mb']['median'] / s['peak_rss_mb']['median'],
                        'loss_step1_abs_diff': abs(o['step1']['loss'] - s['step1']['loss']),
                        'logps_chosen_step1_abs_diff': abs(o['step1']['logps/chosen'] - s['step1']['logps/chosen']),
                        'same_token_ids': o['ids_hash'] == s['ids_hash'] == data['ids_hash']}
        c = checks[side]
        c['met'] = SIDES[side][0] == 'trl' and c['speedup'] >= 1.3 and c['rss_ratio'] <= 0.7 and c['loss_step1_abs_diff'] <= 1e-4 and c['same_token_ids']
        print(f"{sides[0]} vs {side}: {c['speedup']:.2f}x pairs/s (target >= 1.3x), {c['rss_ratio']:.2f}x peak RSS (target <= 0.7x), "
              f"|loss diff| at step 1 {c['loss_step1_abs_diff']:.1e} (<= 1e-4), same token ids: {c['same_token_ids']}")
    print(f'load now {load()}; torch threads per worker {reps[0]["sides"][sides[0]]["torch_threads"]}')
    if not args.keep: shutil.rmtree(work, ignore_errors=True)
    compact_logs(reps)
    write_result('training', {'machine': info, 'args': vars(args), 'data': data, 'repeats': reps, 'summary': summary,
                              'checks': checks, 'targets': {'speedup': 1.3, 'rss_ratio': 0.7, 'loss_step1_abs_diff': 1e-4}},
                 args.out)


if __name__ == '__main__':
    main()
