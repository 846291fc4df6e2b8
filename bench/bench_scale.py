"""Scale: how generation and DPO training time grow with the number of prompts.

The demo-sized policy (`tiny-gpt2`: 4 layers, 128 wide, a 2,048-token BPE fitted on real reviews, as in the demo
preset) so that 1,024 prompts fit in the time budget of this 2-core CPU; the `gpt2`-shaped model would take about
50x longer per token. Real IMDb prompts; 4 samples x 48 new tokens per prompt (`generate_completions`, batch 256);
TF-IDF scores; best-vs-worst pairs (about one per prompt); one epoch of DPO at batch 32 on recorded reference
log-probs (`make_trainer`). Sizes are interleaved within each repeat (64, 256, 1024, 64, ...); medians reported.
"""
import shutil, tempfile
from _common import *


def setup(n_max: int):
    from dpo_imdb.data import load_tokenizer
    from dpo_imdb.scoring import TfidfScorer
    train = imdb_reviews('train')
    tok = load_tokenizer('train', texts=train.shuffle(seed=0).select(range(5000))['text'], vocab_size=2048)
    prompts = imdb_prompts(tok, n_max)
    labelled = imdb_reviews('test').shuffle(seed=1).select(range(2000))
    return tok, prompts, TfidfScorer.fit(labelled['text'], labelled['label'])


def one(n: int, tok, prompts, scorer, max_new_tokens: int, seed: int) -> dict:
    from dpo_imdb.config import from_preset
    from dpo_imdb.generation import SamplingConfig, generate_completions
    from dpo_imdb.models import load_policy
    from dpo_imdb.scoring import score_completions
    from dpo_imdb.training import make_trainer
    from dpo_imdb.triplets import make_triplets
    policy = load_policy('tiny-gpt2', tok)
    gen_s, completions = timed(generate_completions, policy, tok, prompts.select(range(n)),
                               SamplingConfig(n=4, max_new_tokens=max_new_tokens, batch_size=256, seed=seed), progress=False)
    score_s, (scored, _) = timed(score_completions, scorer, completions, progress=False)
    triplets, _ = make_triplets(scored)
    tmp = tempfile.mkdtemp(prefix='bench-scale-')
    cfg = from_preset('demo', max_length=max_new_tokens + 16, num_epochs=1.0, eval_steps=10**6, save_steps=10**6,
                      logging_steps=10, wandb_mode='disabled', out_dir=tmp)
    trainer = make_trainer(policy, tok, triplets, None, cfg, out_dir=tmp, progress=False)
    trainer.args.save_strategy = 'no'
    train_s, _ = timed(trainer.train)
    shutil.rmtree(tmp, ignore_errors=True)
    return {'prompts': n, 'completions': len(completions), 'pairs': len(triplets), 'steps': trainer.state.global_step,
            'generate_seconds': gen_s, 'score_seconds': score_s, 'train_seconds': train_s, 'load': load()}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--sizes', default='64,256,1024')
    p.add_argument('--max-new-tokens', type=int, default=48)
    args = p.parse_args()
    if args.quick: args.sizes, args.max_new_tokens, args.repeats = '16,64', 16, 1
    need_shared(); set_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(',')]
    info = machine()
    banner('scale', info, sizes=sizes, max_new_tokens=args.max_new_tokens, repeats=args.repeats)
    tok, prompts, scorer = setup(max(sizes))
    one(8, tok, prompts, scorer, 4, 0)                                  # warm-up
    runs = {n: [] for n in sizes}
    for r in range(args.repeats):
        for n in sizes:
            runs[n].append(one(n, tok, prompts, scorer, args.max_new_tokens, r))
            x = runs[n][-1]
            print(f"  repeat {r}: {n:5d} prompts: generate {x['generate_seconds']:6.1f} s, train {x['train_seconds']:6.1f} s "
                  f"({x['pairs']} pairs, {x['steps']} steps) (load {x['load']})", flush=True)
    rows, base = [], sizes[0]
    g0 = median([x['generate_seconds'] for x in runs[base]]); t0 = median([x['train_seconds'] for x in runs[base]])
    for n in sizes:
        g = median([x['generate_seconds'] for x in runs[n]]); t = median([x['train_seconds'] for x in runs[n]])
        rows.append([n, runs[n][0]['pairs'], g, g / g0 / (n / base), 1000 * g / (4 * n), t, t / t0 / (n / base),
                     1000 * t / max(1, runs[n][0]['pairs'])])
    print(table(['prompts', 'pairs', 'generate s', 'gen s/prompt vs smallest', 'ms/completion', 'train s',
                 'train s/prompt vs smallest', 'ms/pair'], rows))
    print(f'load now {load()}; torch threads {info["torch_threads"]}')
    write_result('scale', {'machine': info, 'args': vars(args), 'runs': runs, 'table': rows}, args.out)


if __name__ == '__main__':
    main()
