"""Candidate fast paths for `generate_completions`, measured against the library as it is (same prompts, same seeds).

Each variant swaps in a modified copy of `dpo_imdb.generation.sample_batch` (the library is not edited):

- as-is:          the library.
- keep-last:      the prompt (prefill) forward computes logits for the last position only (`logits_to_keep=1`)
                  instead of every prompt position.
- static-cache:   a preallocated `StaticCache` (prompt + new tokens long) instead of `DynamicCache`, which
                  concatenates every layer's keys and values at every step.
- both:           keep-last + static-cache.

Also prints where the time goes in the library's path (model forward vs noise vs the rest), and checks that every
variant samples the same completions as the library. Variants are interleaved within each repeat.
"""
import inspect, math
import torch
from _common import *
import dpo_imdb.generation as G

ORIGINAL = G.sample_batch


def make_variant(keep_last: bool, static: bool):
    "A copy of `sample_batch` with the chosen changes (the body mirrors dpo_imdb/generation.py)."
    from transformers import StaticCache

    @torch.inference_mode()
    def sample_batch(model, prompts, seeds, max_new_tokens, eos_id, pad_id, temperature=1.0, top_k=0, top_p=1.0):
        device, B, T = model.device, len(prompts), max_new_tokens
        ids, mask = G._left_pad(prompts, pad_id, device)
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        kw = G._cache_kwargs(model)
        if static:
            key = next(iter(k for k in kw if k != 'use_cache'))
            kw[key] = StaticCache(config=model.config, max_cache_len=ids.shape[1] + T)
        extra = {'logits_to_keep': 1} if keep_last else {}
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **kw, **extra).logits[:, -1].float()
        noise = G.RowNoise(seeds, logits.shape[-1], T, device)
        out = torch.full((B, T), pad_id, dtype=torch.long, device=device)
        logps = torch.zeros(B, dtype=torch.float64, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        lengths = torch.full((B,), T, dtype=torch.long, device=device)
        active = list(range(B))
        for t in range(T):
            g = -torch.log(-torch.log(noise(t, active)))
            tok = (G.filter_logits(logits, temperature, top_k, top_p) + g).argmax(-1)
            tok = tok.masked_fill(done, pad_id)
            step_logp = torch.log_softmax(logits, -1).gather(-1, tok[:, None])[:, 0]
            logps += step_logp.masked_fill(done, 0.0).double()
            out[:, t] = tok
            if eos_id is not None:
                ended = ~done & (tok == eos_id)
                lengths[ended] = t + 1
                done |= ended
                if ended.any(): active = done.logical_not().nonzero()[:, 0].tolist()
            if t == T - 1 or bool(done.all()): break
            mask = torch.cat([mask, mask.new_ones(B, 1)], 1)
            pos = pos[:, -1:] + 1
            logits = model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos, **kw).logits[:, -1].float()
        lengths = lengths.tolist()
        return [row[:n] for row, n in zip(out.tolist(), lengths)], logps.tolist()
    return sample_batch


def breakdown(model, tok, prompts, batch_size, max_new_tokens) -> dict:
    "Seconds in the model forward, in drawing noise, and elsewhere, for the library's path."
    spent = {'forward': 0.0, 'noise': 0.0}
    fwd, call = model.forward, G.RowNoise.__call__
    def timed_forward(*a, **k):
        t = time.perf_counter(); out = fwd(*a, **k); spent['forward'] += time.perf_counter() - t; return out
    def timed_noise(self, *a):
        t = time.perf_counter(); out = call(self, *a); spent['noise'] += time.perf_counter() - t; return out
    model.forward, G.RowNoise.__call__ = timed_forward, timed_noise
    try: total, _ = timed(G.generate_completions, model, tok, prompts, n=4, max_new_tokens=max_new_tokens,
                          batch_size=batch_size, progress=False)
    finally: model.forward, G.RowNoise.__call__ = fwd, call
    return {'total': total, **spent, 'other': total - spent['forward'] - spent['noise']}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--prompts', type=int, default=32)
    p.add_argument('--max-new-tokens', type=int, default=48)
    p.add_argument('--batch-size', type=int, default=64)
    args = p.parse_args()
    if args.quick: args.prompts, args.max_new_tokens, args.repeats = 4, 8, 1
    need_shared(); set_threads(args.threads)
    model, tok = gpt2_shape()
    prompts = imdb_prompts(tok, args.prompts)
    info = machine()
    banner('generation fast paths', info, prompts=args.prompts, samples=4, max_new_tokens=args.max_new_tokens,
           batch_size=args.batch_size, repeats=args.repeats)
    variants = {'as-is': ORIGINAL, 'keep-last': make_variant(True, False), 'static-cache': make_variant(False, True),
                'both': make_variant(True, True)}
    runs, same = {v: [] for v in variants}, {}
    reference = None
    for r in range(args.repeats):
        for name, fn in variants.items():
            G.sample_batch = fn
            try:
                s, ds = timed(G.generate_completions, model, tok, prompts, n=4, max_new_tokens=args.max_new_tokens,
                              batch_size=args.batch_size, seed=0, progress=False)
            finally: G.sample_batch = ORIGINAL
            runs[name].append({'seconds': s, 'completions_per_s': len(ds) / s, 'load': load()})
            if name == 'as-is' and reference is None: reference = ds
            same[name] = {'same_completions': ds['completion_ids'] == reference['completion_ids'],
                          'max_abs_ref_logps_diff': max(abs(a - b) for a, b in zip(ds['ref_logps'], reference['ref_logps']))}
            print(f"  repeat {r}: {name:13s} {len(ds) / s:6.2f} completions/s (load {load()})", flush=True)
    split = breakdown(model, tok, prompts, args.batch_size, args.max_new_tokens)
    summary = {n: summarize(rs, 'completions_per_s') for n, rs in runs.items()}
    base = summary['as-is']['median']
    print(table(['variant', 'completions/s (median)', 'x as-is', 'same completions', 'max |d ref_logps|'],
                [[n, s['median'], s['median'] / base, same[n]['same_completions'], same[n]['max_abs_ref_logps_diff']]
                 for n, s in summary.items()]))
    print('library path: ' + ', '.join(f'{k} {v:.1f} s' for k, v in split.items())
          + f" (forward {100 * split['forward'] / split['total']:.0f}%)")
    write_result('fastpaths_generation', {'machine': info, 'args': vars(args), 'runs': runs, 'summary': summary,
                                          'same_as_library': same, 'time_split': split}, args.out)


if __name__ == '__main__':
    main()
