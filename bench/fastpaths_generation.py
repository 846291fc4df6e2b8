"""Candidate fast paths for `generate_completions`, measured against the library as it is (same prompts, same seeds).

Every variant runs the library's own sampler, `dpo_imdb.generation.sample_batch` (no copy of it here), with one piece
swapped for the duration of each call (the library's files are not edited):

- as-is:          the library.
- keep-last:      the prompt (prefill) forward computes logits for the last position only (`logits_to_keep=1`)
                  instead of every prompt position: the model's first forward call of each batch gets that argument.
- static-cache:   a preallocated `StaticCache` (prompt + new tokens long) instead of `DynamicCache`, which
                  concatenates every layer's keys and values at every step: the library's `_cache_kwargs` hands it out.
- both:           keep-last + static-cache.

Also prints where the time goes in the library's path (model forward vs drawing tokens vs the rest), and checks that every
variant samples the same completions as the library. Variants are interleaved within each repeat.
"""
import functools
import torch
from _common import *
import dpo_imdb.generation as G

ORIGINAL = G.sample_batch


def make_variant(keep_last: bool, static: bool):
    "The library's `sample_batch`, run with the prefill keeping the last logits only and/or a `StaticCache`."
    from transformers import StaticCache

    def sample_batch(model, prompts, seeds, sampling, *args, **kwargs):
        cache_kwargs, forward = G._cache_kwargs, model.forward
        if static:
            length = max(len(p) for p in prompts) + sampling.max_new_tokens
            def static_cache(m):
                kw = cache_kwargs(m)
                key = next(k for k in kw if k != 'use_cache')
                return {**kw, key: StaticCache(config=m.config, max_cache_len=length)}
            G._cache_kwargs = static_cache
        own_forward = 'forward' in vars(model)                  # set on the instance (e.g. by `breakdown`)
        if keep_last:
            calls = []
            @functools.wraps(forward)                          # same signature: the library picks the same cache keyword
            def first_keeps_last(*a, **k):
                if not calls: k['logits_to_keep'] = 1          # the prefill: one forward over every prompt position
                calls.append(1)
                return forward(*a, **k)
            model.forward = first_keeps_last
        try: return ORIGINAL(model, prompts, seeds, sampling, *args, **kwargs)
        finally:
            G._cache_kwargs = cache_kwargs
            if keep_last:
                if own_forward: model.forward = forward
                else: del model.forward                        # back to the class's forward
    return sample_batch


def breakdown(model, tok, prompts, batch_size, max_new_tokens) -> dict:
    "Seconds in the model forward, in drawing tokens (uniforms + inverse CDF), and elsewhere, for the library's path."
    spent = {'forward': 0.0, 'sampling': 0.0}
    fwd, draw, uniforms = model.forward, G.sample_tokens, G.step_uniforms
    @functools.wraps(fwd)                                  # same signature: the library picks the same cache keyword
    def timed_forward(*a, **k):
        t = time.perf_counter(); out = fwd(*a, **k); spent['forward'] += time.perf_counter() - t; return out
    def timed(fn):
        def go(*a, **k):
            t = time.perf_counter(); out = fn(*a, **k); spent['sampling'] += time.perf_counter() - t; return out
        return go
    model.forward, G.sample_tokens, G.step_uniforms = timed_forward, timed(draw), timed(uniforms)
    try:
        t0 = time.perf_counter()
        G.generate_completions(model, tok, prompts, G.SamplingConfig(n=4, max_new_tokens=max_new_tokens,
                               batch_size=batch_size), progress=False)
        total = time.perf_counter() - t0
    finally: model.forward, G.sample_tokens, G.step_uniforms = fwd, draw, uniforms
    split = {'total': total, **spent, 'other': total - spent['forward'] - spent['sampling']}
    return {**split, 'share': {k: v / total for k, v in split.items() if k != 'total'}}


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
                s, ds = timed(G.generate_completions, model, tok, prompts,
                              G.SamplingConfig(n=4, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=0),
                              progress=False)
            finally: G.sample_batch = ORIGINAL
            runs[name].append({'seconds': s, 'completions_per_s': len(ds) / s, 'load': load()})
            if name == 'as-is' and reference is None: reference = ds
            same[name] = {'same_completions': ds['completion_ids'] == reference['completion_ids'],
                          'max_abs_ref_logps_diff': max(abs(a - b) for a, b in zip(ds['ref_logps'], reference['ref_logps']))}
            print(f"  repeat {r}: {name:13s} {len(ds) / s:6.2f} completions/s (load {load()})", flush=True)
    split = breakdown(model, tok, prompts, args.batch_size, args.max_new_tokens)
    summary = {n: summarize(rs, 'completions_per_s') for n, rs in runs.items()}
    base = summary['as-is']['median']
    for s in summary.values(): s['x_as_is'] = s['median'] / base
    print(table(['variant', 'completions/s (median)', 'x as-is', 'same completions', 'max |d ref_logps|'],
                [[n, s['median'], s['median'] / base, same[n]['same_completions'], same[n]['max_abs_ref_logps_diff']]
                 for n, s in summary.items()]))
    print('library path: ' + ', '.join(f'{k} {v:.1f} s' for k, v in split.items() if k != 'share')
          + f" (forward {100 * split['forward'] / split['total']:.0f}%)")
    write_result('fastpaths_generation', {'machine': info, 'args': vars(args), 'runs': runs, 'summary': summary,
                                          'same_as_library': same, 'time_split': split}, args.out)


if __name__ == '__main__':
    main()
