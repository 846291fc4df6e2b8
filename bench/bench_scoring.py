"""Scoring throughput: reviews per second, ours vs `transformers.pipeline('sentiment-analysis')`.

Same DistilBERT-SST-2-shaped classifier object (random weights: real compute cost), same real IMDb reviews
(test split, cleaned, a seeded random sample: real length distribution), truncation at 512 tokens on every side.

- ours:              `dpo_imdb.scoring.SentimentScorer` (tokenize once, sort by length, dynamic padding per batch,
                     inference_mode), batch 16 (`--batch-size`; on a CPU small batches waste less on padding and lose
                     nothing: one 300-token review already fills the matrix units).
- ours bf16:         the same call under `torch.autocast('cpu', torch.bfloat16)`: a proposed fast path (this CPU has
                     AVX512-BF16); its scores are compared with fp32 ones. `bf16 bs=1` scores one review at a time
                     (no padding at all; bf16 matrix products are efficient even for one review).
- pipeline default:  `pipeline('sentiment-analysis', model=..., tokenizer=...)(texts, truncation=True)`: batch 1.
                     (`truncation=True` is the one argument a user must add: without it the pipeline raises on the
                     reviews longer than 512 tokens.)
- pipeline bs=32:    the same with `batch_size=32` (pads each batch of 32 reviews, in the order given).

Each repeat scores its own slice of the sample (the same slice on every side), sides in the order above.
The slices are small (`--per-repeat`) because a 300-token review costs ~0.3 s on one core; ours sorts only within
its slice, so its padding is a little worse than on the whole sample (the table shows each side's padding
efficiency = real tokens / tokens computed).
"""
import numpy as np
import torch
from _common import *


def ours(scorer, texts: list[str], bf16: bool = False) -> tuple[dict, np.ndarray]:
    ctx = torch.autocast('cpu', dtype=torch.bfloat16) if bf16 else torch.autocast('cpu', enabled=False)
    with ctx: s, scores = timed(scorer, texts)
    return {'seconds': s, 'reviews': len(texts)}, scores.probs


def peer(pipe, texts: list[str], **kwargs) -> tuple[dict, np.ndarray]:
    s, out = timed(pipe, texts, truncation=True, **kwargs)
    probs = np.array([o['score'] if o['label'].upper() == 'POSITIVE' else 1 - o['score'] for o in out], np.float32)
    return {'seconds': s, 'reviews': len(texts)}, probs


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--reviews', type=int, default=2000, help='size of the review sample')
    p.add_argument('--per-repeat', type=int, default=64, help='reviews each side scores per repeat (0 = all)')
    p.add_argument('--variants', default='fp32:16,bf16:16,bf16:1',
                   help="ours' variants, precision:batch_size, comma-separated (the first is the library as it is)")
    args = p.parse_args()
    if args.quick: args.reviews, args.per_repeat, args.repeats = 64, 16, 2
    need_shared(); set_threads(args.threads)
    from transformers import pipeline
    from dpo_imdb.scoring import SentimentScorer
    model, tok = distilbert_shape()
    reviews = imdb_reviews('test').shuffle(seed=0).select(range(args.reviews))
    texts = list(reviews['text'])
    per = args.per_repeat or len(texts)
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=512)['input_ids']]
    variants = [(v.split(':')[0], int(v.split(':')[1])) for v in args.variants.split(',')]
    scorers = {bs: SentimentScorer(model, tok, batch_size=bs) for _, bs in variants}
    pipe = pipeline('sentiment-analysis', model=model, tokenizer=tok, device=torch.device('cpu'))
    info = machine()
    banner('scoring', info, reviews=args.reviews, per_repeat=per, mean_tokens=round(float(np.mean(lengths)), 1),
           truncated=int(np.sum(np.array(lengths) >= 512)), repeats=args.repeats)
    sides = {f'ours {prec} bs={bs}': (lambda t, bs=bs, prec=prec: ours(scorers[bs], t, bf16=prec == 'bf16'))
             for prec, bs in variants}
    sides |= {'pipeline default (bs=1)': lambda t: peer(pipe, t), 'pipeline bs=32': lambda t: peer(pipe, t, batch_size=32)}
    for call in sides.values(): call(texts[:4])                        # warm-up

    def efficiency(lens, bs, sort):
        lens = sorted(lens, reverse=True) if sort else list(lens)
        return sum(lens) / sum(max(lens[i:i + bs]) * len(lens[i:i + bs]) for i in range(0, len(lens), bs))
    pad = {n: [] for n in sides}
    runs, agree = {k: [] for k in sides}, []
    for r in range(args.repeats):
        lo = (r * per) % len(texts)
        part = (texts + texts)[lo:lo + per]
        probs = {}
        for name, fn in sides.items():
            res, probs[name] = fn(part)
            res |= {'reviews_per_s': res['reviews'] / res['seconds'], 'load': load()}
            runs[name].append(res)
            print(f"  repeat {r}: {name:26s} {res['reviews']:5d} reviews in {res['seconds']:7.1f} s = "
                  f"{res['reviews_per_s']:6.2f}/s (load {res['load']})", flush=True)
        lens = (lengths + lengths)[lo:lo + per]
        for n in sides:
            pad[n].append(1.0 if 'default' in n else efficiency(lens, 32, False) if 'bs=32' in n
                          else efficiency(lens, int(n.split('bs=')[1]), True))
        ref = probs['pipeline default (bs=1)']
        agree.append({name: float(np.abs(pr - ref).max()) for name, pr in probs.items()})

    summary = {name: summarize(rs, 'reviews_per_s') for name, rs in runs.items()}
    base, batched = summary['pipeline default (bs=1)']['median'], summary['pipeline bs=32']['median']
    for n, s in summary.items():                                       # the table's columns, as they are shown
        s.update(x_default=s['median'] / base, x_batched=s['median'] / batched, padding_efficiency=median(pad[n]),
                 max_abs_prob_diff=max(a[n] for a in agree))
    rows = [[n, s['median'], s['min'], s['max'], s['median'] / base, s['median'] / batched, median(pad[n]),
             max(a[n] for a in agree)] for n, s in summary.items()]
    print(table(['side', 'reviews/s (median)', 'min', 'max', 'x default', 'x bs=32', 'padding eff.',
                 'max |dprob| vs default'], rows))
    result = {'machine': info, 'args': vars(args), 'runs': runs, 'summary': summary, 'max_abs_prob_diff': agree,
              'padding_efficiency': pad, 'padding_efficiency_whole_sample_sorted': {bs: efficiency(lengths, bs, True) for _, bs in variants},
              'mean_tokens': float(np.mean(lengths)), 'targets': {'vs_default': 3.0, 'vs_batched': 1.0}}
    for name in (n for n in summary if n.startswith('ours')):
        v = summary[name]['median']
        result[name] = {'vs_default': v / base, 'vs_batched': v / batched, 'met': v / base >= 3 and v >= batched}
        print(f"{name}: {v / base:.2f}x the default pipeline (target >= 3x), {v / batched:.2f}x the batched one "
              f"(target >= 1x)")
    print(f'load now {load()}; torch threads {torch.get_num_threads()}')
    write_result('scoring', result, args.out)


if __name__ == '__main__':
    main()
