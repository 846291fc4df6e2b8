"""Real-data tier: the stages on the real IMDb reviews, the real GPT-2 tokenizer and the real model shapes.

The data and assets are found only through environment variables (`.ci/run` sets them): DPO_IMDB_DATA_DIR (the IMDb
parquet files), DPO_IMDB_GPT2_DIR (GPT-2 tokenizer and config) and DPO_IMDB_DISTILBERT_DIR (a DistilBERT SST-2 config
and vocabulary). A variable that is not set skips its tests with the reason printed; one that is set but names a
missing or unreadable folder or file fails them (`conftest.real_data`).
The models have random weights: these tests check shapes, plumbing and data handling, never quality.
"""
import numpy as np
import pytest
import torch
from conftest import real_data

@pytest.fixture(scope='module')
def imdb():
    from dpo_imdb.data import load_imdb
    return load_imdb(str(real_data('DPO_IMDB_DATA_DIR', 'train.parquet', 'test.parquet')))

@pytest.fixture(scope='module')
def gpt2_dir():
    return real_data('DPO_IMDB_GPT2_DIR', 'vocab.json', 'merges.txt', 'config.json')

@pytest.fixture(scope='module')
def gpt2_tokenizer(gpt2_dir):
    from dpo_imdb.data import load_tokenizer
    return load_tokenizer(str(gpt2_dir))

@pytest.fixture(scope='module')
def prompts(imdb, gpt2_tokenizer):
    from dpo_imdb.data import make_prompts
    return make_prompts(imdb['train'].select(range(400)), gpt2_tokenizer, n_train=200, n_eval=40, seed=0, verbose=False)

def test_prompts_are_2_to_8_real_gpt2_tokens(imdb, gpt2_tokenizer, prompts):
    from dpo_imdb.data import clean_review
    assert gpt2_tokenizer('Hello world')['input_ids'] == [15496, 995]      # it is the real GPT-2 BPE
    rows = prompts['train'].to_list() + prompts['eval'].to_list()
    assert len(prompts['train']) == 200 and len(prompts['eval']) == 40
    assert all(2 <= len(r['prompt_ids']) <= 8 for r in rows)
    assert all(isinstance(i, int) for r in rows for i in r['prompt_ids'])
    assert not {r['review_id'] for r in prompts['train']} & {r['review_id'] for r in prompts['eval']}
    texts = dict(zip(imdb['train']['id'], imdb['train']['text']))
    is_prefix = [clean_review(texts[r['review_id']]).startswith(r['prompt']) for r in rows]
    assert all(is_prefix), f"only {np.mean(is_prefix):.2f} of prompts start their review"

@pytest.fixture(scope='module')
def gpt2_shaped(gpt2_dir, gpt2_tokenizer):
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(gpt2_dir)).eval()   # real 124M shape, random weights
    assert sum(p.numel() for p in model.parameters()) == 124_439_808
    return model

@pytest.fixture(scope='module')
def distilbert_scorer():
    distilbert = real_data('DPO_IMDB_DISTILBERT_DIR', 'config.json', 'vocab.txt')
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from dpo_imdb.scoring import SentimentScorer
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(distilbert))
    return SentimentScorer(model, AutoTokenizer.from_pretrained(distilbert), batch_size=8)

def test_prompt_prefixes_from_first_words_are_the_whole_reviews_tokens(imdb, gpt2_tokenizer):
    "make_prompts tokenizes each review's first k words: for GPT-2's BPE, the first k tokens of the whole review."
    from dpo_imdb.data import _prefixes, clean_review, splits_at_whitespace
    raw = imdb['test'].shuffle(seed=0)['text'][:5000]
    assert splits_at_whitespace(gpt2_tokenizer)
    for texts in (raw, [clean_review(t) for t in raw]):                      # <br /> tags, entities, newlines
        ks = np.random.default_rng(1).integers(1, 17, size=len(texts))
        whole = gpt2_tokenizer(texts, add_special_tokens=False, truncation=True, max_length=16)['input_ids']
        assert _prefixes(texts, gpt2_tokenizer, ks) == [ids[:k] for ids, k in zip(whole, ks)]

def test_real_shapes_generate_score_and_pair(prompts, gpt2_tokenizer, gpt2_shaped, distilbert_scorer):
    from dpo_imdb.generation import SamplingConfig, generate_completions
    from dpo_imdb.scoring import score_completions
    from dpo_imdb.triplets import TRIPLET_FEATURES, make_triplets
    two = prompts['eval'].select(range(2))
    comps = generate_completions(gpt2_shaped, gpt2_tokenizer, two, SamplingConfig(n=2, max_new_tokens=8, seed=0), progress=False)
    assert len(comps) == 4
    assert all(1 <= len(ids) <= 8 for ids in comps['completion_ids'])
    scored, n_bad = score_completions(distilbert_scorer, comps, target='prompt+completion', progress=False)
    assert n_bad == 0 and np.isfinite(scored['score']).all()
    assert all(0 <= p <= 1 for p in scored['pos_prob'])
    triplets, stats = make_triplets(scored, pairing='all_pairs')
    assert stats.n_prompts == 2 and stats.n_completions == 4
    assert (stats.n_pairs, stats.prompts_without_pair) == (2, 0)  # 2 samples per prompt, distinct scores: one pair each
    assert triplets.column_names == list(TRIPLET_FEATURES)
    for t in triplets:
        for col in ('prompt_ids', 'chosen_ids', 'rejected_ids'):
            assert isinstance(t[col], list) and t[col] and all(isinstance(i, int) for i in t[col])
        assert t['chosen_score'] >= t['rejected_score'] and t['margin'] > 0
        assert t['prompt_ids'] == two[t['prompt_idx']]['prompt_ids']
        assert np.isfinite([t['ref_chosen_logps'], t['ref_rejected_logps']]).all()

def test_real_scorer_shape_truncates_long_reviews(imdb, distilbert_scorer):
    texts = imdb['test'].select(range(300))['text']
    longest = max(texts, key=len)
    assert len(distilbert_scorer.tokenizer(longest)['input_ids']) > 512     # needs truncation at the model's 512
    scores = distilbert_scorer([longest, '', '😀 映画'])
    assert np.isfinite(scores.logits).all() and distilbert_scorer.max_length == 512

def test_tfidf_scorer_on_real_imdb(imdb, capsys):
    from dpo_imdb.scoring import TfidfScorer
    scorer = TfidfScorer.fit(imdb['train']['text'], imdb['train']['label'])
    acc = scorer.accuracy(imdb['test']['text'], imdb['test']['label'])
    with capsys.disabled(): print(f"\nTF-IDF scorer, IMDb train -> test accuracy: {acc:.4f}")
    assert acc >= 0.90                    # 0.906 (03_scoring); a scorer that lost its bigrams or tuned C falls below
