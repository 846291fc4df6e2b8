"""Host reads per training step and per sampled batch: the operations that read a device value back, ours and peers'.

On a GPU each such read (`.item()`, `bool(t)`, indexing by a boolean mask) waits for every kernel queued before it,
so the host stops running ahead of the device. They go through the same operators on a CPU, where they cost nothing,
and `dpo_imdb.models.HostReads` counts them there, with where each was called from (torch.optim's reads of its own
step counts, which it keeps on the host, are left out).

- DPO, ours: a step of `make_trainer` (the `train_dpo` path: recorded reference log-probs, `PackedPreferenceCollator`).
- DPO, trl: a step of trl's `DPOTrainer` with a reference model, `gradient_checkpointing=False` (the peer `gpu_check`
  times), on the same pairs as text.
- SFT: a step of `train_sft`.
- A teacher-forced batch: `completion_logps` on 16 completions (the reference's pass of an RLOO step, the KL of 07).
- Sampling a batch (`--rows` rows of real IMDb prompts of 2 to 8 tokens, left-padded, 48 new tokens, pure sampling):
  ours through `sample_completions` (what `generate_completions` runs) with the `static` decoder (the steps a GPU's
  `graph` decoder captures, run here uncaptured: a read inside them would also make the capture fail) and with the
  `eager` one (the CPU's); the peers as `gpu_check` runs them: `model.generate` under `inference_mode` with a dynamic
  cache, with the reference's log-prob pass after it (`completion_logps`), and with `cache_implementation='static'`. A
  second call of each is counted (the static decoder is made in the first); reads per call and per new token.

Each DPO side counts its steps 3 to `2 + --steps` from each step's start to its end (forward, backward, update; the
logging, every 10 steps, comes after a step ends and is not in any counted step). Real IMDb text as the pairs
(prompt: a review's first 6 words; chosen and rejected: the next 30 words of two reviews); a GPT-2 of 2 layers and
width 64 with GPT-2's tokenizer (reads do not depend on the width or the depth: every layer runs the same code).
The counts are properties of the code, not timings: the same on any CPU.
"""
import copy, tempfile
from dataclasses import replace
from _common import *


def count_steps(trainer, first: int, last: int) -> list[dict]:
    "Train; the host reads of each optimizer step `first`..`last` (from 1), as {call site: count}."
    from dpo_imdb.training import StepHostReads
    counter = StepHostReads(range(first, last + 1))
    trainer.add_callback(counter)
    trainer.train()
    return counter.reads


def per_step(counted: list[dict], steps: int | None = None) -> dict:
    "Reads per step over `steps` (default: one dict of `counted` per step), in all, by call site and by file."
    sites, files, steps = {}, {}, steps or len(counted)
    for c in counted:
        for site, n in c.items():
            file = site.split(':')[0]
            sites[site], files[file] = sites.get(site, 0) + n, files.get(file, 0) + n
    mean = lambda d: {k: round(n / steps, 2) for k, n in sorted(d.items(), key=lambda kv: -kv[1])}
    return {'steps': steps, 'reads_per_step': round(sum(sites.values()) / steps, 2),
            'sites_per_step': mean(sites), 'files_per_step': mean(files)}


def sampling_sides(model, tok, prompts: list[list[int]], max_new_tokens: int, dtype, logps_side: bool = False) -> dict:
    """Ways to sample one batch of `prompts`, each a function returning the completions: ours (`sample_completions`
    with the `static` and the `eager` decoder) and transformers' `generate` (`hf_generate`, the peer as `gpu_check`
    times it) with a dynamic and a static cache, and (`logps_side`) followed by the reference's log-prob pass."""
    from gpu_check import hf_generate
    from dpo_imdb.generation import SamplingConfig, sample_completions
    B, width = len(prompts), max(map(len, prompts))
    sampling = SamplingConfig(n=1, max_new_tokens=max_new_tokens, batch_size=B)
    def ours(decoder):
        return lambda: sample_completions(model, tok, prompts, replace(sampling, decoder=decoder), dtype, progress=False)[1]
    def hf(logps: bool = False, static: bool = False):
        return lambda: hf_generate(model, tok, prompts, B, width, max_new_tokens, dtype, logps, static)
    return {'ours_static': ours('static'), 'ours_eager': ours('eager'), 'hf_generate': hf(),
            **({'hf_generate+logps': hf(logps=True)} if logps_side else {}), 'hf_generate_static_cache': hf(static=True)}


def generation(model, tok, prompts: list[list[int]], max_new_tokens: int) -> dict:
    "Host reads of sampling one batch of `prompts`, ours (static and eager decoders) and transformers' `generate`."
    import torch
    from dpo_imdb.models import HostReads
    B = len(prompts)
    sides = {name: (lambda sample=sample: max(map(len, sample())))
             for name, sample in sampling_sides(model, tok, prompts, max_new_tokens, torch.float32, logps_side=True).items()}
    out = {'rows': B, 'max_new_tokens': max_new_tokens}
    for name, go in sides.items():
        go()                                                              # first call: a static decoder is made
        with HostReads() as reads: new_tokens = go()
        by_call = per_step([dict(reads.sites)], 1)
        out[name] = {'new_tokens': new_tokens, 'reads': reads.count, 'reads_per_new_token': round(reads.count / new_tokens, 2),
                     'sites': by_call['sites_per_step'], 'files': by_call['files_per_step']}
    return out


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1)
    p.add_argument('--steps', type=int, default=5, help='steps counted on each side')
    p.add_argument('--pairs', type=int, default=16, help='pairs per DPO batch')
    p.add_argument('--rows', type=int, default=16, help='rows of the sampled batch')
    args = p.parse_args()
    need_shared()
    set_threads(args.threads)
    import torch
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer
    from dpo_imdb.config import from_preset
    from dpo_imdb.data import load_tokenizer
    from dpo_imdb.loss import completion_logps
    from dpo_imdb.models import HostReads, train_sft
    from dpo_imdb.training import make_trainer
    info = machine()
    steps = 2 if args.quick else args.steps
    first, last = 3, 2 + steps
    banner('host reads per training step and per sampled batch', info, steps=steps, pairs=args.pairs)
    tok = load_tokenizer(str(GPT2_SHAPE))
    texts = imdb_reviews('train').select(range(2 * args.pairs * last))['text'][:]
    rows = [{'prompt': ' '.join(a.split()[:6]), 'chosen': ' ' + ' '.join(a.split()[6:36]),
             'rejected': ' ' + ' '.join(b.split()[6:36])} for a, b in zip(texts[::2], texts[1::2])]
    text = Dataset.from_list(rows)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=len(tok), n_positions=128,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id))
    cfg = from_preset('gpu', device='cpu', precision='fp32', max_steps=last, logging_steps=10, save_steps=10**6,
                      eval_steps=10**6, warmup_ratio=0.0, train_batch_size=args.pairs, grad_accum_steps=1)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        trl_args = dict(output_dir=str(Path(d)/'trl'), beta=cfg.beta, max_length=cfg.max_length, max_steps=last,
                        per_device_train_batch_size=args.pairs, learning_rate=cfg.learning_rate, warmup_steps=0,
                        use_cpu=True, bf16=False, report_to='none', save_strategy='no', logging_steps=10,
                        logging_first_step=True, gradient_checkpointing=False, disable_tqdm=True)
        # ours trains on trl's own token ids (EOS appended) with recorded reference log-probs
        ids = DPOTrainer._prepare_dataset(type('Tokenized', (), {'_tokenizer': tok})(), text, tok, DPOConfig(**trl_args),
                                          'train')
        ref = {side: completion_logps(model, ids['prompt_ids'], ids[f'{side}_ids']).tolist() for side in ('chosen', 'rejected')}
        ids = ids.add_column('ref_chosen_logps', ref['chosen']).add_column('ref_rejected_logps', ref['rejected'])
        ours = make_trainer(copy.deepcopy(model), tok, ids, None, cfg, Path(d)/'ours', progress=False, checkpoints=False)
        out['dpo_ours'] = per_step(count_steps(ours, first, last))
        peer = DPOTrainer(model=copy.deepcopy(model), ref_model=copy.deepcopy(model), args=DPOConfig(**trl_args),
                          train_dataset=text, processing_class=tok)
        peer.remove_callback(PrinterCallback)
        out['dpo_trl'] = per_step(count_steps(peer, first, last))
    with HostReads() as reads:                                  # a whole call, its setup included, over its steps
        train_sft(copy.deepcopy(model), tok, texts, steps, 1e-3, 8, 64, progress=False)
    out['sft'] = per_step([reads.sites], steps)
    with HostReads() as reads:
        completion_logps(model, ids['prompt_ids'][:16], ids['chosen_ids'][:16], batch_size=16)
    out['teacher_forced_batch'] = {'rows': 16, **per_step([dict(reads.sites)])}
    reviews = imdb_reviews('test').select(range(args.rows))['text']
    prompts = [tok(text)['input_ids'][:2 + i % 7] for i, text in enumerate(reviews)]   # 2 to 8 tokens, as the presets
    out['generation'] = generation(model.eval(), tok, prompts, 8 if args.quick else 48)
    print(table(['per step', 'DPO: ours', "DPO: trl's DPOTrainer", 'SFT', 'a teacher-forced batch'],
                [['host reads', out['dpo_ours']['reads_per_step'], out['dpo_trl']['reads_per_step'],
                  out['sft']['reads_per_step'], out['teacher_forced_batch']['reads_per_step']]]))
    for name in ('dpo_ours', 'dpo_trl', 'sft'):
        print(f"{name}: " + ', '.join(f'{s} x{n}' for s, n in out[name]['sites_per_step'].items()))
    gen = out['generation']
    sides = [k for k in gen if isinstance(gen[k], dict)]
    print(table(['sampling a batch', *sides], [['host reads', *(gen[k]['reads'] for k in sides)],
                                              ['per new token', *(gen[k]['reads_per_new_token'] for k in sides)]]))
    write_result('host_reads', {'machine': info, 'args': vars(args), 'counted_steps': [first, last], **out}, args.out)


if __name__ == '__main__':
    main()
