"""The `gpu` preset's CPU work before generation: the setup besides SFT, with the TF-IDF scorers fitted in line (as on
a CPU) or in a forked process beside SFT (as on a GPU), and the prompts stage, with prefixes tokenized from each
review's first words or from the whole review.

The `gpu` preset on real IMDb and GPT-2's tokenizer and config, on this CPU in fp32, with a short SFT (`--sft-steps`
steps of `--sft-batch` reviews: GPT-2 124M on one thread, to stand for the GPU's SFT, which leaves the CPU idle) and
one torch thread, so that the forked process has a core of its own as it has beside a GPU. Each mode runs the stages
`setup` and `prompts` from scratch (`run_pipeline(stop_after='prompts')`) and reads their manifests: setup seconds,
SFT seconds, setup besides SFT, and how long the setup waited for the background scorers after SFT. Then
`make_prompts` twice on the same reviews: first words (ours) and whole reviews (the way before), same prompts.
"""
import shutil, tempfile
from _common import *


def setup_and_prompts(cfg, beside_sft: bool) -> dict:
    "Stages setup and prompts of `cfg` from scratch; the scorers fitted beside SFT or in line."
    import dpo_imdb.pipeline as pipeline
    pipeline._fit_in_background = lambda device: beside_sft          # on a CPU the setup fits them in line
    t0 = time.perf_counter()
    run = pipeline.run_pipeline(cfg, force=True, stop_after='prompts', progress=False)
    wall = time.perf_counter() - t0
    setup, prompts = run.manifest('setup'), run.manifest('prompts')
    counts = setup['counts']
    return {'wall_seconds': round(wall, 2), 'setup_seconds': setup['seconds'], 'sft_seconds': counts['sft_seconds'],
            'setup_besides_sft_seconds': round(setup['seconds'] - counts['sft_seconds'], 2),
            'fitted_beside_sft': counts.get('fitted_beside_sft', []),
            'waited_for_them_seconds': counts.get('waited_for_them_seconds'), 'prompts_seconds': prompts['seconds'],
            'scorers': json.loads((run.path('setup')/'scorers.json').read_text())}


def prompt_tokenizing(cfg) -> dict:
    "`prompts_from_config` on the train + unsup reviews: from each review's first words, and from the whole review."
    import dpo_imdb.data as data
    from datasets import concatenate_datasets
    from dpo_imdb.pipeline import load_reviews
    reviews = load_reviews(cfg)
    pool = concatenate_datasets([reviews[s] for s in ('train', 'unsup') if s in reviews])
    tok = data.load_tokenizer(cfg.policy)
    out, made, ours = {}, {}, data.splits_at_whitespace
    for name, split in (('first_words', ours), ('whole_reviews', lambda tokenizer: False)):
        data.splits_at_whitespace = split
        t0 = time.perf_counter()
        made[name] = data.prompts_from_config(pool, tok, cfg)
        out[name] = {'seconds': round(time.perf_counter() - t0, 2)}
    data.splits_at_whitespace = ours
    same = all(made['first_words'][s]['prompt_ids'][:] == made['whole_reviews'][s]['prompt_ids'][:] for s in ('train', 'eval'))
    if not same: raise AssertionError('first-words prefixes differ from whole-review prefixes')
    return {'reviews': len(pool), 'prompts': {s: len(made['first_words'][s]) for s in ('train', 'eval')},
            'same_prompts': same, **out, 'speedup': round(out['whole_reviews']['seconds'] / out['first_words']['seconds'], 2)}


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(repeats=1, threads=1)
    p.add_argument('--sft-steps', type=int, default=3)
    p.add_argument('--sft-batch', type=int, default=8)
    args = p.parse_args()
    need_shared()
    set_threads(args.threads)
    from dpo_imdb.config import from_preset
    info = machine()
    sft_steps, sft_batch = (1, 2) if args.quick else (args.sft_steps, args.sft_batch)
    with tempfile.TemporaryDirectory() as d:
        cfg = from_preset('gpu', policy=str(GPT2_SHAPE), data=str(IMDB), device='cpu', precision='fp32', out_dir=d,
                          wandb_mode='disabled', sft_steps=sft_steps, sft_batch_size=sft_batch)
        banner('the gpu preset before generation: setup and prompts', info, sft_steps=sft_steps, sft_batch=sft_batch)
        modes = {}
        for r in range(args.repeats):
            for name, beside in (('in_line', False), ('beside_sft', True)):
                modes.setdefault(name, []).append(setup_and_prompts(cfg, beside))
                m = modes[name][-1]
                print(f"  {name}: setup {m['setup_seconds']} s, SFT {m['sft_seconds']} s, besides SFT "
                      f"{m['setup_besides_sft_seconds']} s, waited {m['waited_for_them_seconds']} s; prompts "
                      f"{m['prompts_seconds']} s (load {load()})", flush=True)
                shutil.rmtree(cfg.out_dir, ignore_errors=True)
        if modes['beside_sft'][0]['scorers'] != modes['in_line'][0]['scorers']:     # the same scorers either way
            raise AssertionError('scorer cards differ')
        prompts = prompt_tokenizing(cfg)
    rows = [[name, median([m['setup_seconds'] for m in ms]), median([m['sft_seconds'] for m in ms]),
             median([m['setup_besides_sft_seconds'] for m in ms]), median([m['prompts_seconds'] for m in ms])]
            for name, ms in modes.items()]
    print(table(['scorers', 'setup (s)', 'SFT (s)', 'setup besides SFT (s)', 'prompts stage (s)'], rows))
    print(f"make_prompts, {prompts['reviews']} reviews: first words {prompts['first_words']['seconds']} s, whole reviews "
          f"{prompts['whole_reviews']['seconds']} s ({prompts['speedup']}x), same prompts: {prompts['same_prompts']}")
    write_result('setup', {'machine': info, 'args': vars(args), 'sft_steps': sft_steps, 'sft_batch': sft_batch,
                           'modes': modes, 'table': rows, 'make_prompts': prompts}, args.out)


if __name__ == '__main__':
    main()
