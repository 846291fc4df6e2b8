"""Host time of a decoding step at GPT-2's depth: how long sampling takes per new token when the arithmetic costs next
to nothing, ours and transformers' `generate`.

On a GPU the host runs the Python, the dispatcher and the cache bookkeeping, and launches each kernel while the device
runs them; a decoding step takes at least as long as the host needs to launch it, however fast the device. That time
belongs to the code (how many operators a step calls, how much Python runs between them), not to the model's width:
GPT-2 124M calls the same operators as a 12-layer GPT-2 of width 16. This script times sampling with such models --
GPT-2's config (12 layers, its GELU and layer norms) at the widths `--widths`, 2 heads, and a 512-token BPE fitted on
real IMDb reviews, so that the arithmetic is a small part of a step (the widths show how small) -- on one CPU thread:
16 real IMDb prompts of 2 to 8 tokens, 48 new tokens (the batch runs every step while one row has not ended),
interleaved repeats, medians, in fp32 and under bf16 autocast (the `gpu` preset's precision):

- ours, the `static` decoder (`sample_completions`): the steps the `graph` decoder captures, here uncaptured; on a
  GPU the graph replays them with one launch, so this is the host time the capture takes away;
- ours, the `eager` decoder (the CPU's loop, and the reference);
- transformers' `generate` with a dynamic and with a static cache (`hf_generate`, the peer `gpu_check` times)
  -- the sides whose host reads `bench_host_reads.py` counts (`sampling_sides`).

On a CPU each operator also runs its (tiny) kernel in line, where on a GPU it launches one, a few microseconds each,
and bf16 kernels on a CPU are slower than fp32 ones for tiny tensors. Training steps are not timed this way: on a CPU,
dropout draws its random numbers on the host, attention in training falls back to its unfused form, and the optimizer
is not a GPU's fused kernel, so a CPU's step would not stand for a GPU's host time.
"""
from _common import *
from bench_host_reads import sampling_sides


def decoding(model, tok, prompts: list[list[int]], new_tokens: int, dtype, repeats: int) -> dict:
    "Milliseconds per new token of sampling one batch of `prompts`, each side, interleaved repeats (medians)."
    sides = sampling_sides(model, tok, prompts, new_tokens, dtype)
    for name, go in sides.items():                              # warm-up; the static decoder is made here
        assert max(map(len, go())) == new_tokens, f'{name}: every row ended early'
    runs = {name: [] for name in sides}
    for _ in range(repeats):
        for name, go in sides.items(): runs[name].append(timed(go)[0] / new_tokens * 1e3)
    return {name: {'ms_per_token': round(median(xs), 2), 'min': round(min(xs), 2), 'max': round(max(xs), 2),
                   'runs': [round(x, 3) for x in xs]} for name, xs in runs.items()}


def main():
    p = parser(__doc__.splitlines()[0])
    p.set_defaults(threads=1, repeats=7)
    p.add_argument('--widths', default='16,64', help="the models' widths, comma-separated (GPT-2 124M: 768)")
    p.add_argument('--rows', type=int, default=16, help='rows of the sampled batch')
    args = p.parse_args()
    need_shared()
    set_threads(args.threads)
    import torch
    from transformers import AutoConfig, GPT2LMHeadModel
    from dpo_imdb.data import load_tokenizer
    info = machine()
    repeats, new_tokens = (2, 8) if args.quick else (args.repeats, 48)
    banner('host time of a decoding step at GPT-2 depth', info, widths=args.widths, rows=args.rows, repeats=repeats)
    reviews = imdb_reviews('train').select(range(2000))['text'][:]
    tok = load_tokenizer('train', reviews, vocab_size=512)
    prompts = [tok(text)['input_ids'][:2 + i % 7] for i, text in enumerate(reviews[:args.rows])]   # 2 to 8 tokens
    out = {'rows': args.rows, 'new_tokens': new_tokens, 'widths': {}}
    for width in map(int, args.widths.split(',')):
        config = AutoConfig.from_pretrained(str(GPT2_SHAPE))         # GPT-2's own settings, then narrow
        config.update(dict(n_embd=width, n_head=2, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config).eval()
        model.generation_config.eos_token_id = None                  # generate runs every step, as ours does here
        r = out['widths'][str(width)] = {'n_layer': config.n_layer, 'n_embd': width, 'n_head': config.n_head,
                                         'vocab_size': config.vocab_size,
                                         'parameters': sum(p.numel() for p in model.parameters())}
        for precision, dtype in (('fp32', torch.float32), ('bf16', torch.bfloat16)):
            d = r[precision] = decoding(model, tok, prompts, new_tokens, dtype, repeats)
            r.setdefault('static_over_generate', {})[precision] = round(d['ours_static']['ms_per_token'] /
                                                                        d['hf_generate']['ms_per_token'], 2)
            print(f'-- width {width}, {precision}', flush=True)
            print(table(['ms per new token', *r[precision]], [['', *(v['ms_per_token'] for v in r[precision].values())]]))
    write_result('host_time', {'machine': info, 'args': vars(args), **out}, args.out)


if __name__ == '__main__':
    main()
