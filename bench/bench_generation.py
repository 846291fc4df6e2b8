"""Generation throughput: completions per second, ours vs the code a user would otherwise write.

Same `gpt2`-shaped model object (random weights: real compute cost), same real IMDb prompts, same sampling
settings (do_sample, temperature 1, top_k=0, top_p=1.0, 48 new tokens, pad = EOS), 4 samples per prompt.

- ours:      `dpo_imdb.generation.generate_completions` (length-sorted batches, KV cache, inference_mode, per-row
             seeded noise, reference log-probs recorded on the way) over all prompts at once.
- pipeline:  `transformers.pipeline('text-generation')` called once per prompt with `num_return_sequences=4`.
- generate:  `model.generate` once per prompt with `num_return_sequences=4`, then decoding.

The peers handle one prompt at a time, so their throughput does not depend on which prompts they see; to keep the
run short each repeat times them on its own slice of the prompts (`--peer-prompts` per repeat, a different slice
each repeat), while ours always runs on all of them. Order within a repeat: ours, pipeline, generate.
"""
import torch
from _common import *


def ours(model, tok, prompts, batch_size: int, seed: int, max_new_tokens: int, n: int) -> dict:
    from dpo_imdb.generation import SamplingConfig, generate_completions
    sampling = SamplingConfig(n=n, max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                              batch_size=batch_size, seed=seed)
    s, ds = timed(generate_completions, model, tok, prompts, sampling, progress=False)
    return {'seconds': s, 'completions': len(ds), 'tokens': sum(map(len, ds['completion_ids']))}


def peer_pipeline(pipe, texts: list[str], settings: dict, n: int) -> dict:
    def run():
        outs = [pipe(t, num_return_sequences=n, return_full_text=False, **settings) for t in texts]
        return [o['generated_text'] for out in outs for o in out]
    s, completions = timed(run)
    return {'seconds': s, 'completions': len(completions), 'tokens': None}


def peer_generate(model, tok, texts: list[str], settings: dict, n: int) -> dict:
    def run():
        completions, tokens = [], 0
        with torch.inference_mode():
            for t in texts:
                enc = tok(t, return_tensors='pt')
                out = model.generate(**enc, num_return_sequences=n, **settings)[:, enc['input_ids'].shape[1]:]
                tokens += out.numel()
                completions += tok.batch_decode(out, skip_special_tokens=True)
        return completions, tokens
    s, (completions, tokens) = timed(run)
    return {'seconds': s, 'completions': len(completions), 'tokens': tokens}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--prompts', type=int, default=64)
    p.add_argument('--samples', type=int, default=4)
    p.add_argument('--max-new-tokens', type=int, default=48)
    p.add_argument('--batch-sizes', default='64,256', help='batch sizes of ours to time (comma-separated)')
    p.add_argument('--peer-prompts', type=int, default=16, help='prompts each peer is timed on per repeat')
    args = p.parse_args()
    if args.quick: args.prompts, args.peer_prompts, args.max_new_tokens, args.batch_sizes, args.repeats = 8, 2, 8, '16,32', 2
    need_shared(); set_threads(args.threads)
    from transformers import pipeline
    model, tok = gpt2_shape()
    prompts = imdb_prompts(tok, args.prompts)
    texts = list(prompts['prompt'])
    settings = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=args.max_new_tokens,
                    pad_token_id=tok.pad_token_id)
    pipe = pipeline('text-generation', model=model, tokenizer=tok, device=torch.device('cpu'))
    sizes = [int(b) for b in args.batch_sizes.split(',')]
    info = machine()
    banner('generation', info, prompts=args.prompts, samples=args.samples, max_new_tokens=args.max_new_tokens,
           peer_prompts_per_repeat=args.peer_prompts, repeats=args.repeats)
    # warm-up: first calls pay one-off costs (kernel selection, lazy imports)
    ours(model, tok, prompts.select(range(2)), 8, 0, 4, 2)
    peer_pipeline(pipe, texts[:1], {**settings, 'max_new_tokens': 4}, 2)
    peer_generate(model, tok, texts[:1], {**settings, 'max_new_tokens': 4}, 2)

    runs = {f'ours bs={b}': [] for b in sizes} | {'pipeline per prompt': [], 'generate per prompt': []}
    for r in range(args.repeats):
        for b in sizes:
            runs[f'ours bs={b}'].append({**ours(model, tok, prompts, b, r, args.max_new_tokens, args.samples), 'load': load()})
        lo = (r * args.peer_prompts) % len(texts)
        part = (texts + texts)[lo:lo + args.peer_prompts]
        runs['pipeline per prompt'].append({**peer_pipeline(pipe, part, settings, args.samples), 'load': load()})
        runs['generate per prompt'].append({**peer_generate(model, tok, part, settings, args.samples), 'load': load()})
        for name, rs in runs.items():
            rs[-1]['completions_per_s'] = rs[-1]['completions'] / rs[-1]['seconds']
            print(f"  repeat {r}: {name:22s} {rs[-1]['completions']:5d} completions in {rs[-1]['seconds']:7.1f} s "
                  f"= {rs[-1]['completions_per_s']:6.2f}/s (load {rs[-1]['load']})", flush=True)

    summary = {name: summarize(rs, 'completions_per_s') for name, rs in runs.items()}
    best = max((n for n in summary if n.startswith('ours')), key=lambda n: summary[n]['median'])
    base = summary['pipeline per prompt']['median']
    for s in summary.values(): s['x_pipeline'] = s['median'] / base
    rows = [[name, s['median'], s['min'], s['max'], s['median'] / base] for name, s in summary.items()]
    print(table(['side', 'completions/s (median)', 'min', 'max', 'x pipeline'], rows))
    speedup = summary[best]['median'] / base
    print(f'ours ({best}) vs pipeline per prompt: {speedup:.2f}x (target >= 4x); load now {load()}; '
          f"torch threads {torch.get_num_threads()}")
    write_result('generation', {'machine': info, 'args': vars(args), 'runs': runs, 'summary': summary, 'best_ours': best,
                                'speedup_vs_pipeline': speedup,
                                'speedup_vs_generate': summary[best]['median'] / summary['generate per prompt']['median'],
                                'target': 4.0, 'met': speedup >= 4.0}, args.out)


if __name__ == '__main__':
    main()
