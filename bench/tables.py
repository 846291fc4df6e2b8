"""Print the tables of BENCHMARKS.md from the measured results in bench/measured/*.json.

    python bench/tables.py              # every table, in the order BENCHMARKS.md shows them
    python bench/tables.py generation   # one of: machine, summary, generation, fastpaths, scoring, training, training_rss,
                                        # training_memory, e2e, scale, processes, gpu_h200, gpu_h200_preset, gpu_h200_frontier, gpu_targets,
                                        # setup_cpu, host_work, host_reads, host_reads_sampling, host_time, logps_memory

The JSON files are what the bench/ scripts wrote to bench/results/ (git-ignored), copied to bench/measured/ and
committed. Each table is printed under the `Source:` line that BENCHMARKS.md keeps above it; tests/test_benchmarks.py
checks that every number of every table in BENCHMARKS.md is found in the JSON files its Source line names.
"""
import json, sys
from pathlib import Path

MEASURED = Path(__file__).resolve().parent / 'measured'

def load(name: str) -> dict: return json.loads((MEASURED / f'{name}.json').read_text())

def source(*names: str) -> str: return 'Source: ' + ', '.join(f'`bench/measured/{n}.json`' for n in names) + '.'

def row(*cells) -> str: return '| ' + ' | '.join(str(c) for c in cells) + ' |'

def head(*cells) -> str: return row(*cells) + '\n' + '|' + '---|' * len(cells)

def f(x, d=2) -> str: return f'{x:,.{d}f}'

def loads(r: dict) -> str: return f"load {r['machine']['loadavg_start'][0]:.1f}→{r['loadavg_end'][0]:.1f}"

def yes(b: bool) -> str: return '**yes**' if b else '**no**'

def machine() -> str:
    m = load('generation')['machine']
    return '\n'.join([source('generation'), '', head('', ''),
                      row('CPU', f"`lscpu` model name \"{m['cpu']}\", {m['cores']} cores"),
                      row('RAM', f"{m['ram_gib']} GiB"), row('GPU', 'none' if not m['gpu'] else 'yes'),
                      row('Software', f"Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, "
                                      f"trl {m['trl']}, datasets {m['datasets']}"),
                      row('Threads', f"{m['torch_threads']} torch thread per process (`--threads 1`)")])

def summary() -> str:
    g, s, t, e, c = (load(n) for n in ('generation', 'scoring', 'training', 'e2e', 'scale'))
    gs, best = g['summary'], g['best_ours']
    ss, base, batched = s['summary'], 'pipeline default (bs=1)', 'pipeline bs=32'
    lib, fast = 'ours fp32 bs=16', 'ours bf16 bs=1'
    ts, tc, tt = t['summary'], t['checks']['trl'], t['targets']
    whole = next(r for r in e['table'] if str(r[0]).startswith('whole run'))
    first, last = c['table'][0], c['table'][-1]
    lines = [source('generation', 'scoring', 'training', 'e2e', 'scale'), '',
             head('benchmark', 'ours', 'peer', 'ratio', 'target', 'met?'),
             row(f"generation, completions/s ({loads(g)})", f"{f(gs[best]['median'])} (`generate_completions`, {best.split()[-1]})",
                 f"{f(gs['pipeline per prompt']['median'])} (`pipeline` per prompt); {f(gs['generate per prompt']['median'])} (`model.generate` per prompt)",
                 f"**{f(g['speedup_vs_pipeline'])}x** pipeline", f"≥ {g['target']:g}x", yes(g['met'])),
             row(f"scoring, reviews/s, library as is (fp32, bs 16) ({loads(s)})", f(ss[lib]['median']),
                 f"{f(ss[base]['median'])} (default pipeline, bs 1); {f(ss[batched]['median'])} (bs 32)",
                 f"**{f(ss[lib]['x_default'])}x** default, **{f(ss[lib]['x_batched'])}x** bs 32",
                 f"≥ {s['targets']['vs_default']:g}x default, ≥ {s['targets']['vs_batched']:g}x bs 32", yes(s[lib]['met'])),
             row('scoring, proposed bf16 fast path (bs 1)', f(ss[fast]['median']), 'same peers',
                 f"**{f(ss[fast]['x_default'])}x** default, {f(ss[fast]['x_batched'])}x bs 32",
                 f"≥ {s['targets']['vs_default']:g}x, ≥ {s['targets']['vs_batched']:g}x", yes(s[fast]['met'])),
             row(f"DPO training, pairs/s ({loads(t)})", f(ts['ours']['pairs_per_s']['median'], 3),
                 f"{f(ts['trl']['pairs_per_s']['median'], 3)} (trl `DPOTrainer` + reference model)",
                 f"**{f(tc['speedup'])}x**", f"≥ {tt['speedup']:g}x", yes(tc['speedup'] >= tt['speedup'])),
             row('DPO training, peak RSS', f"{f(ts['ours']['peak_rss_mb']['median'], 0)} MiB",
                 f"{f(ts['trl']['peak_rss_mb']['median'], 0)} MiB", f"**{f(tc['rss_ratio'])}x**", f"≤ {tt['rss_ratio']:g}x",
                 yes(tc['rss_ratio'] <= tt['rss_ratio'])),
             row('DPO training, loss at step 1', f"{ts['ours']['step1']['loss']:.7f}", f"{ts['trl']['step1']['loss']:.7f}",
                 f"\\|diff\\| {tc['loss_step1_abs_diff']:.1e}", f"≤ {tt['loss_step1_abs_diff']:.0e}",
                 yes(tc['loss_step1_abs_diff'] <= tt['loss_step1_abs_diff'])),
             row(f"end to end, `dpo-imdb demo` ({loads(e)})", f"{f(whole[1], 1)} s wall, {f(whole[2], 0)} MiB peak",
                 '(no peer)', '', '', ''),
             row(f"scale, tiny-gpt2, {first[0]} → {last[0]} prompts ({loads(c)})",
                 f"generate {f(first[2])} → {f(last[2], 1)} s, train {f(first[5])} → {f(last[5], 1)} s", '',
                 'see the scale table', '', '')]
    return '\n'.join(lines)

def generation() -> str:
    g = load('generation')
    return '\n'.join([source('generation'), '', head('side', 'completions/s (median)', 'min', 'max', '× pipeline')] +
                     [row(n, f(s['median']), f(s['min']), f(s['max']), f(s['x_pipeline'])) for n, s in g['summary'].items()])

def fastpaths() -> str:
    p = load('fastpaths_generation')
    names = {'as-is': 'as-is (the library)', 'keep-last': 'prefill keeps the last position\'s logits only (`logits_to_keep=1`)',
             'static-cache': '`StaticCache` instead of `DynamicCache`', 'both': 'both'}
    split = p['time_split']
    lines = [source('fastpaths_generation'), '', head('variant', 'completions/s (median)', '× as-is', 'same completions', 'max \\|Δ ref log-prob\\|')]
    lines += [row(names[n], f(s['median']), f(s['x_as_is']), 'yes' if p['same_as_library'][n]['same_completions'] else 'no',
                  f"{p['same_as_library'][n]['max_abs_ref_logps_diff']:.1e}") for n, s in p['summary'].items()]
    lines += ['', source('fastpaths_generation'), '', head('library path', 'seconds', 'share'),
              *[row(k, f(split[k], 1), f"{100 * split[k] / split['total']:.0f} %") for k in ('forward', 'sampling', 'other')],
              row('total', f(split['total'], 1), '')]
    return '\n'.join(lines)

def scoring() -> str:
    s = load('scoring')
    return '\n'.join([source('scoring'), '', head('side', 'reviews/s (median)', 'min', 'max', '× default', '× bs=32',
                                                 'padding eff.', 'max \\|Δprob\\| vs default')] +
                     [row(n, f(v['median']), f(v['min']), f(v['max']), f(v['x_default']), f(v['x_batched']),
                          f(v['padding_efficiency']), f"{v['max_abs_prob_diff']:.1e}") for n, v in s['summary'].items()])

def training() -> str:
    t = load('training')
    lines = [source('training'), '', head('side', 'pairs/s', 'median step (s)', 'peak RSS (MiB)', 'ours × speed',
                                          'ours / its RSS', 'loss step 1')]
    lines += [row(n, f(v['pairs_per_s']['median'], 3), f(v['median_step_seconds']['median'], 1),
                  f(v['peak_rss_mb']['median'], 0), f(v['first_x_speed']), f(v['first_over_its_rss']),
                  f"{v['step1']['loss']:.7f}") for n, v in t['summary'].items()]
    lines += ['', source('training'), '', head('side', 'loss, step 1', 'step 2', 'step 3', '`logps/chosen`, step 1')]
    lines += [row(n, *(f'{x:.7f}' for x in v['loss_steps_1_3']), f"{v['step1']['logps/chosen']:.4f}")
              for n, v in t['summary'].items()]
    return '\n'.join(lines)

def training_rss() -> str:
    t = load('training')
    sides = t['repeats'][0]['sides']
    phases = [('import', 'Python + torch + transformers + trl imported'), ('model', '+ the policy, built from its config'),
              ('setup', '+ the trainer (trl: and its reference model)'), ('step1', 'after the first optimizer step'),
              ('last_step', 'after the last step (the peak)')]
    return '\n'.join([source('training'), '', head('RSS (MiB)', *sides)] +
                      [row(label, *(f(sides[n]['rss_mb'][k], 0) for n in sides)) for k, label in phases])

def training_memory() -> str:
    "Ours and trl with and without activation checkpointing and a low glibc mmap threshold (bench_training.py --sides)."
    t = load('training_memory')
    lines = [source('training_memory'), '',
             head('side', 'activation checkpointing', "glibc's mmap threshold", 'pairs/s', 'ours × speed',
                  'RSS after step 1 (MiB)', 'peak RSS (MiB)', 'ours / its RSS', 'loss, step 1')]
    lines += [row(n, 'on' if v['gradient_checkpointing'] else 'off', 'lowered' if '+mmap' in n else 'default',
                  f(v['pairs_per_s']['median'], 3), f(v['first_x_speed']), f(t['repeats'][0]['sides'][n]['rss_mb']['step1'], 0),
                  f(v['peak_rss_mb']['median'], 0), f(v['first_over_its_rss']), f"{v['step1']['loss']:.7f}")
              for n, v in t['summary'].items()]
    return '\n'.join(lines)

def e2e() -> str:
    e = load('e2e')
    return '\n'.join([source('e2e'), '', head('stage', 'seconds', 'peak RSS so far (MiB)', 'raised by (MiB)')] +
                     [row(r[0], f(r[1], 1), f(r[2], 0), f(r[3], 0) if r[3] != '' else '') for r in e['table']])

def scale() -> str:
    c = load('scale')
    return '\n'.join([source('scale'), '', head('prompts', 'pairs', 'generate (s)', 'gen time per prompt vs smallest',
                                                'ms / completion', 'train (s)', 'train time per pair vs smallest', 'ms / pair')] +
                     [row(r[0], r[1], f(r[2]), f(r[3]), f(r[4], 1), f(r[5]), f(r[6]), f(r[7], 1)) for r in c['table']])

def processes() -> str:
    "Seconds per stage (medians) and the whole command's wall time, one process against two, per preset measured."
    presets = [n for n in ('test', 'demo') if (MEASURED / f'processes_{n}.json').is_file()]
    results = {n: load(f'processes_{n}') for n in presets}
    counts = {n: sorted({r['processes'] for r in results[n]['runs']}) for n in presets}
    cols = [(n, k) for n in presets for k in counts[n]]
    label = {'setup': 'setup (main process only)', 'prompts': 'prompts (main process only)', 'generate': 'generate (chunks shared)',
             'score': 'score (chunks shared)', 'triplets': 'triplets (main process only)', 'train': 'train (DDP, gloo)',
             'evaluate': 'evaluate (main process only)'}
    med = lambda xs: sorted(xs)[len(xs) // 2] if len(xs) % 2 else sum(sorted(xs)[len(xs) // 2 - 1:len(xs) // 2 + 1]) / 2
    def cell(n, k, stage):
        v = med([r['stages'][stage] for r in results[n]['runs'] if r['processes'] == k])
        return f(v, 2 if v < 10 else 1 if v < 100 else 0)
    def wall(n, k):
        ws = [r['wall_seconds'] for r in results[n]['runs'] if r['processes'] == k]
        return f'**{f(med(ws), 1)}**' + (f' ({f(min(ws), 1)}-{f(max(ws), 1)})' if len(ws) > 1 else '')
    lines = [source(*(f'processes_{n}' for n in presets)), '',
             head('stage', *(f"`{n}`, {k} process{'es' if k > 1 else ''}" for n, k in cols))]
    lines += [row(label[s], *(cell(n, k, s) for n, k in cols)) for s in label]
    lines += [row('**whole run, wall**', *(wall(n, k) for n, k in cols))]
    return '\n'.join(lines)

def gpu_h200() -> str:
    "What one H200 measured with the check before the GPU fast paths: ours against the peers, each in one run."
    g = load('gpu_check_h200')['steps']
    env, gen, tr = g['environment'], g['generation'], g['training']
    t = gen['timing']
    side = lambda k: f"{f(t[k]['median_seconds'])} s ({f(t[k]['tokens_per_second'], 0)} tokens/s)"
    return '\n'.join([source('gpu_check_h200'), '', head('measured', 'ours', 'peer', 'ours / peer'),
        row(f"generation, {gen['rows']:,} rows of {gen['max_new_tokens']} new tokens in batches of {gen['batch']}, "
            f"`{gen['dtype'].replace('torch.', '')}`", side('ours'), f"{side('hf_generate')}: HF `model.generate`",
            f"**{f(gen['speedup_vs_hf_generate'])}x**"),
        row('the same, the peer followed by the log-prob pass ours records', side('ours'),
            f"{side('hf_generate+logps')}: `generate` + `completion_logps`", f"**{f(gen['speedup_vs_hf_generate_with_logps'])}x**"),
        row(f"DPO training, pairs/s, batch {tr['batch']}, {tr['steps']} steps", f(tr['ours']['pairs_per_second']),
            f"{f(tr['trl']['pairs_per_second'])}: trl `DPOTrainer` with its reference model", f"**{f(tr['speedup_vs_trl'])}x**"),
        row('machine', f"{env['gpu']}, {env['gpu_memory_gib']} GiB", f"torch {env['torch']}, transformers {env['transformers']}, "
            f"trl {env['trl']}", '')])

def gpu_h200_preset() -> str:
    "The `gpu` preset's stages on the same H200."
    p = load('gpu_check_h200')['steps']['preset']
    rows = [row(stage, f(s['seconds']), f(s['peak_gpu_mb'], 0),
                f"{f(s['tokens_per_second'], 0)} tokens/s" if 'tokens_per_second' in s else '') for stage, s in p['stages'].items()]
    return '\n'.join([source('gpu_check_h200'), '', head('stage', 'seconds', 'peak GPU (MiB)', ''), *rows,
                      row('**all stages**', f"**{f(p['total_stage_seconds'], 1)}**", '', '')])

def gpu_h200_frontier() -> str:
    "The runs of the `gpu` frontier that finished before a time limit stopped it, on the same H200."
    r = load('frontier_gpu_h200_partial')['runs']
    def last(run): return run['points'][-1]
    def at(run): return (f"N = {', '.join(str(p['n']) for p in run['points'])}" if 'n' in run['points'][0]
                         else f"step {', '.join(str(p['step']) for p in run['points'])}")
    lines = [source('frontier_gpu_h200_partial'), '', head('run', 'seconds', 'evaluated at', 'last point: KL', 'reward',
                                                           'independent reward')]
    for name, run in r.items():
        p = last(run)
        lines.append(row(name, f(run['seconds']), at(run), f(p['kl']), f(p['reward'], 3), f(p['independent_reward'], 3)))
    return '\n'.join(lines)

def gpu_targets() -> str:
    "The GPU fast paths' targets and what the prepared check's last run says of each."
    c = load('gpu_check_cpu_smoke')
    lines = [source('gpu_check_cpu_smoke'), '', head('target', 'threshold', 'status')]
    for name, t in c['targets'].items():
        lines.append(row(name, f"{t['direction'].replace('>=', '≥').replace('<=', '≤')} {t['target']:,g}", t['status']))
    return '\n'.join(lines)

def setup_cpu() -> str:
    "The `gpu` preset's setup and prompts on a CPU, its TF-IDF scorers fitted in line or beside SFT (bench_setup.py)."
    r = load('setup')
    lines = [source('setup'), '', head('scorers', 'setup (s)', 'SFT (s)', 'setup besides SFT (s)', 'prompts stage (s)')]
    for name, label in (('in_line', 'in line'), ('beside_sft', 'beside SFT')):
        m = r['modes'][name][0]
        lines.append(row(label, f(m['setup_seconds']), f(m['sft_seconds']), f(m['setup_besides_sft_seconds']),
                         f(m['prompts_seconds'])))
    return '\n'.join(lines)

def host_work() -> str:
    "Host work per training step besides the model, before and now (bench_host_work.py)."
    r = load('host_work')
    rl, dpo = r['rloo'], r['dpo_collation']
    return '\n'.join([source('host_work'), '', head('per step, median (ms)', 'before', 'now', 'before / now'),
                      row(f"online RL: a step's data handling, {rl['rows']} rows x {rl['new_tokens']} tokens, {rl['steps']} steps",
                          f"{f(rl['ms_per_step']['before'])}: a Dataset in and out", f"{f(rl['ms_per_step']['now'])}: lists",
                          f"**{f(rl['before_over_now'])}x**"),
                      row(f"DPO: collating a batch of {dpo['pairs']} pairs, {dpo['batches']} batches",
                          f"{f(dpo['ms_per_batch']['trl'])}: trl's `DataCollatorForPreference`",
                          f"{f(dpo['ms_per_batch']['ours'])}: `PackedPreferenceCollator`", f"**{f(dpo['trl_over_ours'])}x**")])

def logps_memory() -> str:
    "Peak memory of a bf16 run's log-prob pass after sampling: all rows in one pass, or within LOGITS_BUDGET (bench_logps_memory.py)."
    r = load('logps_memory')
    lines = [source('logps_memory'), '', head(f"{r['rows']} rows of {r['tokens']} tokens, bf16", 'rows per pass', 'passes',
                                              'logits held at once, counted (GiB)', 'peak memory added (MiB)', 'seconds')]
    for name, label in (('one pass', 'one pass (before)'), ('within budget', 'within `LOGITS_BUDGET` (now)')):
        s = r['sides'][name]
        lines.append(row(label, s['rows_per_pass'], s['passes'], f(s['logits_gib_counted']), f(s['added_peak_rss_mib'], 0),
                         f(s['seconds'], 1)))
    return '\n'.join(lines)

def _by_file(files: dict) -> str:
    "Reads by file: '`dpo_trainer.py` 17, `masking_utils.py` 4'."
    return ', '.join(f'`{name}` {n:g}' for name, n in files.items()) or '-'

def host_reads() -> str:
    "Host reads per training step, ours and trl's, counted on a CPU (bench_host_reads.py)."
    r = load('host_reads')
    first, last = r['counted_steps']
    lines = [source('host_reads'), '', head(f'per step (steps {first} to {last})', 'host reads', 'where (file: reads)')]
    for key, label in (('dpo_ours', 'DPO: ours (`make_trainer`, recorded reference log-probs)'),
                       ('dpo_trl', "DPO: trl's `DPOTrainer` (reference model)"), ('sft', 'SFT (`train_sft`)')):
        lines.append(row(label, f"**{r[key]['reads_per_step']:g}**", _by_file(r[key]['files_per_step'])))
    tf = r['teacher_forced_batch']
    lines.append(row(f"a teacher-forced batch of {tf['rows']} (`completion_logps`)", f"**{tf['reads_per_step']:g}**",
                     _by_file(tf['files_per_step'])))
    return '\n'.join(lines)

def host_reads_sampling() -> str:
    "Host reads of sampling one batch, our decoders and transformers' generate, counted on a CPU (bench_host_reads.py)."
    g = load('host_reads')['generation']
    lines = [source('host_reads'), '',
             head(f"sampling a batch of {g['rows']} rows x {g['max_new_tokens']} new tokens", 'host reads',
                  'per new token', 'where (file: reads)')]
    for key, label in (('ours_static', 'ours: the `static` decoder (the steps the `graph` decoder captures, uncaptured)'),
                       ('ours_eager', 'ours: the `eager` decoder (`sample_batch`, the CPU\'s)'),
                       ('hf_generate', 'transformers\' `generate`'),
                       ('hf_generate+logps', '`generate`, then the reference\'s log-probs, as `gpu_check` times it'),
                       ('hf_generate_static_cache', "`generate(cache_implementation='static')`")):
        r = g[key]
        lines.append(row(label, f"**{r['reads']}**", f"{r['reads_per_new_token']:g}", _by_file(r['files'])))
    return '\n'.join(lines)

def host_time() -> str:
    "Host time per new token at GPT-2's depth with next to no arithmetic, our decoders and generate (bench_host_time.py)."
    r = load('host_time')
    sides = ('ours_static', 'ours_eager', 'hf_generate', 'hf_generate_static_cache')
    lines = [source('host_time'), '',
             head(f"ms per new token, {r['rows']} rows x {r['new_tokens']} new tokens: median (min-max)",
                  'ours: `static` (what `graph` captures, uncaptured)', 'ours: `eager`', "transformers' `generate`",
                  '`generate`, static cache', '`static` / `generate`')]
    for width, w in r['widths'].items():
        for precision, label in (('fp32', 'fp32'), ('bf16', 'bf16 autocast')):
            d = w[precision]
            lines.append(row(f"{w['n_layer']} layers, width {width} ({w['parameters']:,} parameters), {label}",
                             *(f"{f(d[k]['ms_per_token'])} ({f(d[k]['min'])}-{f(d[k]['max'])})" for k in sides),
                             f"{w['static_over_generate'][precision]:.2f}"))
    return '\n'.join(lines)

TABLES = {'machine': machine, 'summary': summary, 'generation': generation, 'fastpaths': fastpaths, 'scoring': scoring,
          'training': training, 'training_rss': training_rss, 'training_memory': training_memory, 'e2e': e2e, 'scale': scale, 'processes': processes,
          'gpu_h200': gpu_h200, 'gpu_h200_preset': gpu_h200_preset, 'gpu_h200_frontier': gpu_h200_frontier,
          'gpu_targets': gpu_targets, 'setup_cpu': setup_cpu, 'host_work': host_work, 'host_reads': host_reads,
          'host_reads_sampling': host_reads_sampling, 'host_time': host_time, 'logps_memory': logps_memory}

if __name__ == '__main__':
    for name in sys.argv[1:] or TABLES: print(f'<!-- {name} -->\n{TABLES[name]()}\n')
