"""The host work of one online RL step besides the model: the data handling of `rloo_train` around its rollouts.

`rloo_train` used to pass each step's prompts to `generate_completions` as a `Dataset` (`prompts.select(pick)`),
get a `Dataset` back (`Dataset.from_dict` of the step's 64 rows) and read its columns; now it reads the prompts once
and calls `sample_completions` and `completion_columns`, which hand it lists. Both sides here take the same rollouts
(random token ids from GPT-2's vocabulary, `--new-tokens` long, for `--prompts-per-step` real IMDb prompts x `--k`)
and do what a step does with them besides the model: the sampler's output into columns (the completions decoded),
the reference's and the policy's packing of prompt + completion (`pack_completions`, twice), the recorded log-probs
as a tensor, and the reward's texts (prompt + completion). Interleaved, step by step; medians. The TF-IDF reward on
the same texts (the same on both sides) is timed apart, for scale.
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


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument('--steps', type=int, default=150)
    p.add_argument('--prompts-per-step', type=int, default=16)
    p.add_argument('--k', type=int, default=4)
    p.add_argument('--new-tokens', type=int, default=48)
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
    banner('the host work of an online RL step besides the model', info, steps=steps, rows=args.prompts_per_step * args.k,
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
    write_result('rloo_host', {'machine': info, 'args': vars(args), 'steps': steps, 'rows': len(rows),
                               'new_tokens': args.new_tokens, 'ms_per_step': ms, 'before_over_now': speedup,
                               'read_once_ms': round(read_once * 1000, 2), 'runs_ms': times}, args.out)


if __name__ == '__main__':
    main()
