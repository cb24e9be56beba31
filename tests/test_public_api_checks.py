"""Every public function of evalkit, judge and minillama (what their `__init__` exports) checks its input:
a wrong type or value is a TypeError / ValueError / the package's error class with a message that says
what was wrong, never an AttributeError or IndexError from deep inside."""
from __future__ import annotations

import asyncio
import inspect

import pytest
import torch

import evalkit
import judge
import minillama
from evalkit import EvalkitError
from judge import JudgeError
from minillama import MiniLlamaError

CONSTANTS = {"METRICS", "DEFINITIONS", "DIMENSIONS"}  # data, not functions
NO_INPUT = {"synonyms_available"}  # takes no argument
# NamedTuple records offer no hook to check their fields when built; their consumers check them
# (write_disease_db and GroundingScorer, cases below).
RECORDS = {"Condition", "DiseaseDB"}


def _tiny_llama():
    torch.manual_seed(0)
    return minillama.Llama(minillama.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                                 num_hidden_layers=1, num_attention_heads=2,
                                                 max_position_embeddings=32))


def _system(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "1", "model": "m", "prompt": "p", "reference": "r", "response": "r"}\n')
    return evalkit.read_pairs(path)


def _record(model="m"):
    return evalkit.Record("1", model, "question", None, "answer")


def _job():
    return judge.build_jobs([_record()], judge.JudgeConfig())[0]


def _tokenizer(path):
    return minillama.Tokenizer(path)


# (exported name, call(tmp_path, tokenizer_path) that passes a wrong input, exception types, message words)
CASES = [
    # evalkit
    ("bleu", lambda t, k: evalkit.bleu(None, "the ref"), TypeError, "BLEU hypothesis must be a string, got NoneType"),
    ("bleu", lambda t, k: evalkit.bleu("a b", ["ref", 3]), TypeError, "BLEU reference must be a string"),
    ("bleu", lambda t, k: evalkit.bleu("a b", []), ValueError, "at least one reference"),
    ("BLEU", lambda t, k: evalkit.BLEU(weights=(-1, 2)), ValueError, "BLEU weight must be a finite number >= 0"),
    ("BLEU", lambda t, k: evalkit.BLEU(lowercase="yes"), TypeError, "lowercase must be True or False"),
    ("corpus_bleu", lambda t, k: evalkit.corpus_bleu("abc", ["abc"]), TypeError, "hypotheses must be a list"),
    ("brevity_penalty", lambda t, k: evalkit.brevity_penalty(-1, 3), ValueError, "hyp_len must be >= 0"),
    ("rouge", lambda t, k: evalkit.rouge("a", None), TypeError, "rouge takes two strings (hyp, ref)"),
    ("rouge", lambda t, k: evalkit.rouge("a", "b", beta=float("nan")), ValueError, "beta must be a finite number"),
    ("meteor", lambda t, k: evalkit.meteor(None, "a"), TypeError, "meteor takes two strings"),
    ("meteor", lambda t, k: evalkit.meteor("a", "a", alpha=2.0), ValueError, "meteor alpha must be a finite number in"),
    ("read_pairs", lambda t, k: evalkit.read_pairs(None), TypeError, "read_pairs takes a file path"),
    ("read_pairs", lambda t, k: evalkit.read_pairs(t / "absent.jsonl"), EvalkitError, "cannot read"),
    ("select_items", lambda t, k: evalkit.select_items(None), TypeError, "select_items takes a list of System"),
    ("Record", lambda t, k: evalkit.Record(1, "m", "p", "r", "a"), TypeError, "Record.id must be a string"),
    ("RunOptions", lambda t, k: evalkit.RunOptions(force="yes"), TypeError, "force must be True or False"),
    ("score_files", lambda t, k: evalkit.score_files("a.jsonl", t), TypeError, "non-empty list of pairs file paths"),
    ("score_files", lambda t, k: evalkit.score_files(["a.jsonl"], t, {}), TypeError, "takes a ScoreConfig"),
    ("ground_files", lambda t, k: evalkit.ground_files(["a.jsonl"], None, t), TypeError, "database as a path"),
    ("select_items", lambda t, k: evalkit.select_items([]), ValueError, "at least one System"),
    ("ScoreConfig", lambda t, k: evalkit.ScoreConfig(bleu_preset="x"), ValueError, "bleu_preset must be one of"),
    ("ScoreConfig", lambda t, k: evalkit.ScoreConfig(stem="yes"), TypeError, "stem must be True or False"),
    ("Scorer", lambda t, k: evalkit.Scorer({"rouge_beta": 1}), TypeError, "Scorer takes a ScoreConfig"),
    ("score_systems", lambda t, k: evalkit.score_systems(None, None), TypeError, "takes a list of System"),
    ("score_systems", lambda t, k: evalkit.score_systems([_system(t)], None), TypeError, "takes a Selection"),
    ("mann_whitney_u", lambda t, k: evalkit.mann_whitney_u(None, [1.0]), TypeError, "x must be a sequence of numbers"),
    ("mann_whitney_u", lambda t, k: evalkit.mann_whitney_u(["a"], [1.0]), TypeError, "x must hold numbers only"),
    ("wilcoxon_signed_rank", lambda t, k: evalkit.wilcoxon_signed_rank([1.0, float("nan")], [1.0, 2.0]),
     ValueError, "x holds a NaN or infinite score (position 1)"),
    ("paired_bootstrap_ci", lambda t, k: evalkit.paired_bootstrap_ci([1, 2], [2, 3], n_resamples=0), ValueError,
     "n_resamples must be >= 1"),
    ("paired_bootstrap_ci", lambda t, k: evalkit.paired_bootstrap_ci([1, 2], [2, 3], confidence=2), ValueError,
     "confidence must be a number in (0, 1)"),
    ("approximate_randomization", lambda t, k: evalkit.approximate_randomization([1], [2], n_permutations=-1),
     ValueError, "n_permutations must be >= 1"),
    ("approximate_randomization", lambda t, k: evalkit.approximate_randomization([1], [2], seed="x"), TypeError,
     "seed must be a non-negative integer"),
    ("rank_biserial", lambda t, k: evalkit.rank_biserial("abc", [1]), TypeError, "x must be a sequence of numbers"),
    ("matched_pairs_rank_biserial", lambda t, k: evalkit.matched_pairs_rank_biserial([1, 2], [1]), ValueError,
     "paired scores need equal lengths"),
    ("cohens_dz", lambda t, k: evalkit.cohens_dz([1.0], {1.0}), TypeError, "y must be a sequence of numbers"),
    ("wilson_interval", lambda t, k: evalkit.wilson_interval(None, 3), TypeError, "successes must be an integer"),
    ("wilson_interval", lambda t, k: evalkit.wilson_interval(1, 3, confidence=2), ValueError,
     "confidence must be a number in (0, 1)"),
    ("mcnemar_exact", lambda t, k: evalkit.mcnemar_exact(None, [1]), TypeError, "x must be a sequence of numbers"),
    ("load_disease_db", lambda t, k: evalkit.load_disease_db(None), TypeError, "load_disease_db takes a file path"),
    ("load_disease_db", lambda t, k: evalkit.load_disease_db(t / "absent.csv"), EvalkitError, "cannot read"),
    ("write_disease_db", lambda t, k: evalkit.write_disease_db(t / "db.csv", None), TypeError,
     "takes an iterable of Condition rows"),
    ("write_disease_db", lambda t, k: evalkit.write_disease_db(t / "db.csv", [evalkit.Condition(None, (), (), ())]),
     ValueError, "name None is empty, padded, not a string"),
    ("Mention", lambda t, k: evalkit.Mention("asthma", "condition", 5, 2), ValueError, "0 <= start <= end"),
    ("NameMatcher", lambda t, k: evalkit.NameMatcher(None), TypeError, "mapping of category -> list of names"),
    ("NameMatcher", lambda t, k: evalkit.NameMatcher({"condition": "asthma"}), TypeError, "mapping of category"),
    ("GroundingScorer", lambda t, k: evalkit.GroundingScorer(None), TypeError, "takes a DiseaseDB"),
    ("GroundingScorer", lambda t, k: evalkit.GroundingScorer(evalkit.DiseaseDB("x", (("asthma",),))), TypeError,
     "takes a DiseaseDB"),
    ("ground_systems", lambda t, k: evalkit.ground_systems(None, None, None), TypeError, "takes a list of System"),
    ("build_table3", lambda t, k: evalkit.build_table3([], None, None, [], {}), TypeError, "takes a list of System"),
    ("render_table3", lambda t, k: evalkit.render_table3({}), ValueError, "missing"),
    ("krippendorff_alpha", lambda t, k: evalkit.krippendorff_alpha("ab"), TypeError, "data must be a sequence"),
    ("krippendorff_alpha", lambda t, k: evalkit.krippendorff_alpha([[1, 2], [1, 2]], level="x"), ValueError,
     "level must be one of"),
    ("alpha_bootstrap_ci", lambda t, k: evalkit.alpha_bootstrap_ci([[1, 2, 3], [1, 2, 3]], n_resamples=0), ValueError,
     "n_resamples must be >= 1"),
    ("icc2", lambda t, k: evalkit.icc2([["a", "b"], ["c", "d"]]), TypeError, "ratings must hold numbers only"),
    ("weighted_kappa", lambda t, k: evalkit.weighted_kappa(None, [1]), TypeError, "a must be a sequence of numbers"),
    ("weighted_kappa", lambda t, k: evalkit.weighted_kappa([1, 2], [1, 2], weights="x"), ValueError,
     "weights must be one of"),
    # judge
    ("JudgeConfig", lambda t, k: judge.JudgeConfig(concurrency=0), JudgeError, "JudgeConfig.concurrency must be >= 1"),
    ("JudgeConfig", lambda t, k: judge.JudgeConfig(base_url="notaurl"), JudgeError,
     "JudgeConfig.base_url 'notaurl' is not an http:// or https:// URL"),
    ("JudgeConfig", lambda t, k: judge.JudgeConfig(api_key="sk-plain"), TypeError, "api_key must be a judge.Secret"),
    ("JudgeConfig", lambda t, k: judge.JudgeConfig(temperature=float("inf")), JudgeError, "temperature must be"),
    ("JudgeClient", lambda t, k: judge.JudgeClient(None), TypeError, "JudgeClient takes a JudgeConfig"),
    ("ChatResult", lambda t, k: judge.ChatResult(None), TypeError, "ChatResult.text must be a string"),
    ("Secret", lambda t, k: judge.Secret(None), TypeError, "Secret holds a key string"),
    ("Journal", lambda t, k: judge.Journal(None), TypeError, "Journal takes a file path"),
    ("judgment_key", lambda t, k: judge.judgment_key(None, [], {}, 0, []), TypeError, "judge_model must be a str"),
    ("paired_records", lambda t, k: judge.paired_records("a.jsonl"), TypeError,
     "wrap it: paired_records(['a.jsonl'])"),
    ("JudgeOptions", lambda t, k: judge.JudgeOptions(repeats="2"), TypeError, "repeats must be an integer"),
    ("judge_files", lambda t, k: judge.judge_files(["a.jsonl"], t, None), TypeError, "a JudgeConfig and a JudgeOptions"),
    ("parse_scores", lambda t, k: judge.parse_scores(None), TypeError, "parse_scores takes the reply text"),
    ("parse_verdict", lambda t, k: judge.parse_verdict(3), TypeError, "parse_verdict takes the reply text"),
    ("Job", lambda t, k: judge.Job("score", "1", ("m",), 0, [], "k"), ValueError, "Job.kind must be"),
    ("build_jobs", lambda t, k: judge.build_jobs(None, judge.JudgeConfig()), TypeError, "list of evalkit Records"),
    ("build_jobs", lambda t, k: judge.build_jobs([_record()], judge.JudgeConfig(), pairwise=True),
     ValueError, "pairwise needs at least two systems"),
    ("judge_one", lambda t, k: asyncio.run(judge.judge_one(_job(), None)), TypeError, "a Job and a JudgeClient"),
    ("run_jobs", lambda t, k: asyncio.run(judge.run_jobs([_job()], None, None)), TypeError,
     "a JudgeClient and a Journal"),
    ("table2", lambda t, k: judge.table2([], []), ValueError, "models is empty"),
    ("table2", lambda t, k: judge.table2([{"id": "1"}], ["m"]), ValueError, "every row needs"),
    ("render_markdown", lambda t, k: judge.render_markdown(None), TypeError, "takes the dict table2() returns"),
    ("render_markdown", lambda t, k: judge.render_markdown({"models": []}), ValueError, "missing"),
    # minillama
    ("LlamaConfig", lambda t, k: minillama.LlamaConfig(hidden_size=-4096), MiniLlamaError,
     "hidden_size must be a positive integer, got -4096"),
    ("LlamaConfig", lambda t, k: minillama.LlamaConfig.from_hf_dict(None), MiniLlamaError, "expected a JSON object"),
    ("LlamaConfig", lambda t, k: minillama.LlamaConfig.from_file(None), MiniLlamaError, "must be a path"),
    ("Llama", lambda t, k: minillama.Llama({"hidden_size": 8}), MiniLlamaError, "Llama takes a LlamaConfig"),
    ("Llama", lambda t, k: minillama.Llama.from_pretrained(None), MiniLlamaError, "model path_or_id must be a path"),
    ("Llama", lambda t, k: _tiny_llama()(torch.tensor([[1, 99]])), MiniLlamaError, "token id 99 is outside"),
    ("Llama", lambda t, k: _tiny_llama().generate(torch.tensor([[1]]), 2, top_p=0.0), MiniLlamaError,
     "top_p must be a number in (0, 1]"),
    ("Llama", lambda t, k: _tiny_llama().save_pretrained(None), MiniLlamaError, "out_dir must be a path"),
    ("left_pad", lambda t, k: minillama.left_pad("ab"), MiniLlamaError, "prompts must be a list of lists"),
    ("finish_reasons", lambda t, k: minillama.finish_reasons(None, 1, 2), MiniLlamaError, "must be a 2-D tensor"),
    ("Tokenizer", lambda t, k: minillama.Tokenizer(None), MiniLlamaError, "Tokenizer path must be a path"),
    ("Tokenizer", lambda t, k: _tokenizer(k).encode_batch("abc"), MiniLlamaError, "expects a list of str"),
    ("Tokenizer", lambda t, k: _tokenizer(k).decode([1, 99999]), MiniLlamaError, "99999 is not a token id"),
    ("Tokenizer", lambda t, k: _tokenizer(k).encode_chat("hello"), MiniLlamaError, "messages must be a list"),
    ("load_tokenizer", lambda t, k: minillama.load_tokenizer(None), MiniLlamaError, "must be a path"),
    ("BPETokenizer", lambda t, k: minillama.BPETokenizer(None), MiniLlamaError, "BPETokenizer path must be a path"),
    ("BPETokenizer", lambda t, k: minillama.BPETokenizer(t / "tokenizer.json"), MiniLlamaError,
     "tokenizer.json: tokenizer file not found"),
    ("RopeScaling", lambda t, k: minillama.RopeScaling(0, 1.0, 4.0, 8192), MiniLlamaError,
     "rope_scaling.factor must be a finite number > 0, got 0"),
    ("RopeScaling", lambda t, k: minillama.RopeScaling(8.0, 1.0, 4.0, 8192, rope_type="yarn"), MiniLlamaError,
     "rope scaling 'yarn' is not supported"),
]


@pytest.mark.parametrize("name, call, error, words", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_wrong_input_is_refused_with_a_clear_message(tmp_path, llama2_tokenizer_path, name, call, error, words):
    with pytest.raises(error) as info:
        call(tmp_path, llama2_tokenizer_path)
    assert words in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("package", [evalkit, judge, minillama], ids=lambda p: p.__name__)
def test_every_exported_function_has_a_case(package):
    covered = {c[0] for c in CASES}
    exported = [n for n in package.__all__ if n not in CONSTANTS | NO_INPUT | RECORDS]
    errors = [n for n in exported if inspect.isclass(getattr(package, n)) and
              issubclass(getattr(package, n), BaseException)]
    missing = [n for n in exported if n not in errors and n not in covered]
    assert not missing, f"exported by {package.__name__} without an input check test: {missing}"
