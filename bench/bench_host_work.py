"""Host work per training step besides the model: online RL's data handling, and DPO's batch collation.

Online RL:
`rloo_train` used to pass each step's prompts to `generate_completions` as a `Dataset` (`prompts.select(pick)`),
get a `Dataset` back (`Dataset.from_dict` of the step's 64 rows) and read its columns; now it reads the prompts once
and calls `sample_completions` and `completion_columns`, which hand it lists. Both sides here take the same rollouts
(random token ids from GPT-2's vocabulary, `--new-tokens` long, for `--prompts-per-step` real IMDb prompts x `--k`)
and do what a step does with them besides the model: the sampler's output into columns (the completions decoded),
the reference's and the policy's packing of prompt + completion (`pack_completions`, twice), the recorded log-probs
as a tensor, and the reward's texts (prompt + completion). Interleaved, step by step; medians. The TF-IDF reward on
the same texts (the same on both sides) is timed apart, for scale.

DPO: each step's batch of `--pairs` pairs (real IMDb prompts, chosen and rejected completions of random GPT-2 token
ids, 30 to `--new-tokens` long) collated by trl's `DataCollatorForPreference` and by `PackedPreferenceCollator` (the
`gpu` preset's `max_length`, so no row is cut), interleaved batch by batch, the two checked equal.
"""
import numpy as np
from _common import *


def old_step(prompts, pick, tok, rows, completions, logps):
    "The per-step data handling before: a `Dataset` in (`select`), a `Dataset` out (`from_dict`), its columns read."
    import torch
    from dpo_imdb.generation import _completion_rows
    from dpo_imdb.loss import pack_completions
    part = prompts.select(pick)
    ids = part['prompt_ids'][:]
    samples = _completion_rows(part, tok, rows, ids, completions, logps, 0)
    p_ids, c_ids = samples['prompt_ids'], samples['completion_ids']
    old = torch.tensor(samples['ref_logps'], dtype=torch.float32)
    assert not any(len(p) == 0 for p in p_ids)                     # completion_logps' check
    packed = [pack_completions(p_ids, c_ids) for _ in range(2)]     # the reference's pass, the policy's
    texts = [p + c for p, c in zip(samples['prompt'], samples['completion'])]
    return texts, packed, old


def new_step(prompt_ids, prompt_texts, pick, tok, rows, completions, logps):
    "The per-step data handling now: lists picked from lists read once, `completion_columns` into lists."
    import torch
    from dpo_imdb.generation import completion_columns
    from dpo_imdb.loss import pack_completions
    picked = [prompt_ids[i] for i in pick]
    samples = completion_columns(tok, rows, picked, completions, logps, prompts=[prompt_texts[i] for i in pick])
    p_ids, c_ids = samples['prompt_ids'], completions
    old = torch.tensor(logps, dtype=torch.float32)
    assert not any(len(p) == 0 for p in p_ids)
    packed = [pack_completions(p_ids, c_ids) for _ in range(2)]
    texts = [p + c for p, c in zip(samples['prompt'][:], samples['completion'][:])]
    return texts, packed, old


def dpo_collation(prompt_ids, batches: int, pairs: int, new_tokens: int, pad_id: int, max_length: int) -> dict:
    "Milliseconds per batch (medians) of trl's collator and ours, on the same batches."
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from dpo_imdb.training import PackedPreferenceCollator
    theirs = DataCollatorForPreference(pad_token_id=pad_id, max_length=max_length)
    ours = PackedPreferenceCollator(pad_token_id=pad_id, max_length=max_length)
    rng, times = np.random.default_rng(1), {'trl': [], 'ours': []}
    completion = lambda: rng.integers(0, pad_id, rng.integers(30, new_tokens + 1)).tolist()
    for b in range(batches):
        examples = [{'prompt_ids': prompt_ids[i], 'chosen_ids': completion(), 'rejected_ids': completion(),
                     'ref_chosen_logps': float(rng.normal(-150, 20)), 'ref_rejected_logps': float(rng.normal(-150, 20))}
                    for i in rng.choice(len(prompt_ids), pairs, replace=False)]
        t_trl, a = timed(theirs, examples)
        t_ours, b_ = timed(ours, examples)
        if a.keys() != b_.keys() or not all(torch.equal(a[k], b_[k]) and a[k].dtype == b_[k].dtype for k in a):
            raise AssertionError(f'batch {b}: the collators disagree')
        times['trl'].append(t_trl * 1000); times['ours'].append(t_ours * 1000)
    ms = {k: round(median(v), 2) for k, v in times.items()}
    return {'batches': batches, 'pairs': pairs, 'ms_per_batch': ms, 'trl_over_ours': round(ms['trl'] / ms['ours'], 2),
            'runs_ms': times}


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument('--steps', type=int, default=150)
    p.add_argument('--prompts-per-step', type=int, default=16)
    p.add_argument('--k', type=int, default=4)
    p.add_argument('--new-tokens', type=int, default=48)
    p.add_argument('--pairs', type=int, default=64)
    args = p.parse_args()
    need_shared()
    set_threads(args.threads)
    from dpo_imdb.data import load_tokenizer
    from dpo_imdb.scoring import TfidfScorer
    info = machine()
    steps = 10 if args.quick else args.steps
    tok = load_tokenizer(str(GPT2_SHAPE))
    prompts = imdb_prompts(tok, 5000)
    train = imdb_reviews('train').shuffle(seed=0).select(range(5000))
    scorer = TfidfScorer.fit(train['text'], train['label'])
    banner('host work per training step besides the model', info, steps=steps, rows=args.prompts_per_step * args.k,
           new_tokens=args.new_tokens)
    t0 = time.perf_counter()
    prompt_ids, prompt_texts = prompts['prompt_ids'][:], prompts['prompt'][:]
    read_once = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    rows = [(p, s) for p in range(args.prompts_per_step) for s in range(args.k)]
    times = {'before': [], 'now': [], 'reward': []}
    for step in range(steps):
        pick = rng.choice(len(prompts), args.prompts_per_step, replace=False).tolist()
        completions = rng.integers(0, tok.eos_token_id, (len(rows), args.new_tokens)).tolist()   # no EOS: full length
        logps = rng.normal(-150, 20, len(rows)).tolist()
        t_old, (texts_old, packed_old, _) = timed(old_step, prompts, pick, tok, rows, completions, logps)
        t_new, (texts_new, packed_new, _) = timed(new_step, prompt_ids, prompt_texts, pick, tok, rows, completions, logps)
        if texts_old != texts_new or any((a != b).any() for x, y in zip(packed_old, packed_new) for a, b in zip(x, y)):
            raise AssertionError(f'step {step}: the two sides disagree')
        t_reward, _ = timed(scorer, texts_new)
        for name, t in (('before', t_old), ('now', t_new), ('reward', t_reward)): times[name].append(t * 1000)
    ms = {name: round(median(ts), 2) for name, ts in times.items()}
    speedup = round(ms['before'] / ms['now'], 2)
    print(table(['per step (ms, median)', 'before: Datasets', 'now: lists', 'before / now', 'TF-IDF reward'],
                [[f'{len(rows)} rows x {args.new_tokens} tokens', ms['before'], ms['now'], speedup, ms['reward']]]))
    print(f"reading the {len(prompts)} prompts' columns once: {read_once * 1000:.1f} ms; over {steps} steps the "
          f"difference is {(ms['before'] - ms['now']) * steps / 1000:.2f} s")
    from dpo_imdb.config import from_preset
    dpo = dpo_collation(prompt_ids, steps, args.pairs, args.new_tokens, tok.eos_token_id, from_preset('gpu').max_length)
    print(table(['DPO batch collation (ms, median)', "trl's DataCollatorForPreference", 'PackedPreferenceCollator', 'trl / ours'],
                [[f"{args.pairs} pairs, {steps} batches", dpo['ms_per_batch']['trl'], dpo['ms_per_batch']['ours'],
                  dpo['trl_over_ours']]]))
    rl = {'steps': steps, 'rows': len(rows), 'new_tokens': args.new_tokens, 'ms_per_step': ms, 'before_over_now': speedup,
          'read_once_ms': round(read_once * 1000, 2), 'runs_ms': times}
    write_result('host_work', {'machine': info, 'args': vars(args), 'rloo': rl, 'dpo_collation': dpo}, args.out)


if __name__ == '__main__':
    main()
