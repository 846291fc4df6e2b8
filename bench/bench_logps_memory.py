"""Memory of the log-prob pass a bf16 run makes after sampling: every row at once, or within `LOGITS_BUDGET`.

In a bf16 run `sample_completions` records each completion's log-prob with `completion_logps` (`05_loss`), a
teacher-forced pass over the rows it just sampled. Its largest tensors are the logits: rows x tokens x GPT-2's 50,257
tokens in bf16, then their float32 copy and its log-softmax (`sequence_logps`). The `gpu` preset samples 1,024 rows at
once, and the pass used to take them all in one forward: 26.5 GiB of logits, where the H200 run's generation stage
peaked at 27.0 GiB. It now takes as many rows a pass as `LOGITS_BUDGET` (1 GiB of float32 logits) leaves room for.

Both ways, each in its own process, on the same rows: `--rows` completions of 48 random token ids after prompts of 2
to 8 random ids (the `gpu` preset's lengths), under a GPT-2 of GPT-2's vocabulary and width with 2 layers (the body's
activations, a few MB a layer at these sizes, do not change the picture), in bf16 autocast on the CPU:

- `one pass`: `completion_logps(..., batch_size=rows)` with no budget, as the sampler called it before;
- `within budget`: the same call as the sampler makes it now.

Reported: the peak resident memory the pass added (`VmHWM` after it less `VmRSS` before it), its seconds, the rows per
forward pass, the logits' bytes as counted (bf16 logits plus float32 copy and log-softmax), and the largest
difference between the two ways' log-probs.
"""
import math
from _common import *

PROMPT_LENS, NEW_TOKENS = (2, 8), 48


def rows_of(n: int, vocab: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    "`n` prompts of 2 to 8 random ids and completions of 48, the longest row 56 tokens (as in the `gpu` preset)."
    import random
    rng = random.Random(seed)
    prompts = [[rng.randrange(vocab) for _ in range(rng.randint(*PROMPT_LENS))] for _ in range(n)]
    prompts[0] = prompts[0][:1] + [rng.randrange(vocab) for _ in range(PROMPT_LENS[1] - 1)]      # one of 8 tokens
    return prompts, [[rng.randrange(vocab) for _ in range(NEW_TOKENS)] for _ in range(n)]


def logits_bytes(rows: int, tokens: int, vocab: int) -> int:
    "What `sequence_logps` holds at once in bf16: the logits (2 bytes), their float32 copy and its log-softmax (4 + 4)."
    return rows * tokens * vocab * 2 + rows * (tokens - 1) * vocab * 8


def side(name: str, rows: int) -> dict:
    "One way, in this process: the memory the pass adds, its time, and its log-probs."
    import torch
    from transformers import AutoConfig, GPT2LMHeadModel
    from dpo_imdb import loss
    cfg = AutoConfig.from_pretrained(str(GPT2_SHAPE)); cfg.n_layer = 2
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg).eval()
    prompts, completions = rows_of(rows, cfg.vocab_size)
    if name == 'one pass': loss.LOGITS_BUDGET = math.inf                       # the sampler's call before the budget
    shapes = []
    hook = model.register_forward_hook(lambda module, args, out: shapes.append(list(out.logits.shape)))
    before = rss_mb()
    seconds, logps = timed(loss.completion_logps, model, prompts, completions, rows, torch.bfloat16)
    hook.remove()
    return {'added_peak_rss_mib': peak_rss_mb() - before, 'seconds': seconds, 'forward_shapes': shapes,
            'rows_per_pass': shapes[0][0], 'passes': len(shapes), 'logps': logps.tolist(), 'vocab': cfg.vocab_size,
            'logits_gib_counted': logits_bytes(shapes[0][0], shapes[0][1], cfg.vocab_size) / 2**30}


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument('--rows', type=int, default=256, help='rows of the pass (the gpu preset samples 1,024 at once)')
    p.add_argument('--side', default=None, help=argparse.SUPPRESS)            # internal: run one side and print JSON
    args = p.parse_args()
    need_shared()
    if args.quick: args.rows = 16
    set_threads(args.threads or 1)
    if args.side:
        print('RESULT ' + json.dumps(side(args.side, args.rows))); return
    info = machine()
    banner('logps_memory', info, rows=args.rows)
    sides = {}
    for name in ('one pass', 'within budget'):
        out = subprocess.run([sys.executable, __file__, '--side', name, '--rows', str(args.rows), '--threads',
                              str(args.threads or 1)], capture_output=True, text=True, check=True).stdout
        sides[name] = json.loads(next(l[7:] for l in out.splitlines() if l.startswith('RESULT ')))
        print(f"{name}: {sides[name]['passes']} pass(es) of {sides[name]['rows_per_pass']} rows, +"
              f"{sides[name]['added_peak_rss_mib']:,.0f} MiB peak, {sides[name]['seconds']:.1f} s", flush=True)
    a, b = (sides[n].pop('logps') for n in sides)
    vocab = sides['one pass'].pop('vocab'); sides['within budget'].pop('vocab')
    from dpo_imdb.loss import LOGITS_BUDGET
    result = {'machine': info, 'rows': args.rows, 'tokens': PROMPT_LENS[1] + NEW_TOKENS, 'vocab': vocab,
              'logits_budget': LOGITS_BUDGET, 'sides': sides,
              'max_abs_logp_difference': max(abs(x - y) for x, y in zip(a, b)),
              'gpu_preset_one_pass_gib_counted': logits_bytes(1024, PROMPT_LENS[1] + NEW_TOKENS, vocab) / 2**30,
              'peak_ratio': sides['one pass']['added_peak_rss_mib'] / sides['within budget']['added_peak_rss_mib']}
    print(table(['side', 'rows per pass', 'passes', 'logits counted (GiB)', 'peak added (MiB)', 'seconds'],
                [[n, s['rows_per_pass'], s['passes'], s['logits_gib_counted'], s['added_peak_rss_mib'], s['seconds']]
                 for n, s in sides.items()]))
    print(f"largest log-prob difference between the two: {result['max_abs_logp_difference']:.2e}")
    write_result('logps_memory', result, args.out)


if __name__ == '__main__':
    main()
