"""A byte-level BPE `tokenizer.json` trained with the `tokenizers` library (test-only) in Llama-3's layout,
and random texts full of accents, CJK, emoji, digits, contractions and whitespace runs."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

# Llama 3's split pattern, verbatim from meta-llama/Meta-Llama-3-8B's tokenizer.json (pre_tokenizer Split).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
# Llama 3's first special tokens, in its order (ids 128000 ... after the BPE vocabulary).
LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                  "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                  "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]

WORDS = ("the patient has a fever and a sore throat for three days doctor said take rest drink water "
         "Hello World THE Über").split()
PIECES = [
    "it's", "don't", "I'M", "they'll", "we've", "she'd", "you're", "O'Neil", "'S", "'ll", "rock'n'roll",
    "café", "naïve", "résumé", "Ångström", "façade", "jalapeño", "Zürich", "São", "e\u0301", "n\u0303o",
    "日本語", "中文测试", "한국어", "テスト", "漢字かな", "Привет", "αβγδ", "مرحبا", "שלום", "नमस्ते", "สวัสดี",
    "😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤️", "🤖🤖",
    "0", "7", "42", "123", "2024", "1234567", "3.14", "1,000,000", "²", "½", "٣٤٥", "Ⅻ", "$5", "#1",
    "...", "!!", "?!", "—", "«»", "(", ")", '"', "@", "-", "_", "::", "</s>", "<|eot_id|>", "[INST]",
    " ", "  ", "   ", "    ", "\n", "\n\n", "\r\n", "\t", " \n ", "\n \n", "\u00a0", "\u3000", " \t\n",
]


def random_text(rng: random.Random, pieces: int | None = None) -> str:
    """A random string of words and hard pieces (some joined without a space, some after runs of spaces)."""
    out = []
    for _ in range(pieces if pieces is not None else rng.randint(1, 12)):
        out.append(rng.choice(PIECES) if rng.random() < 0.6 else rng.choice(WORDS))
        out.append(rng.choice(["", " ", " ", " ", "  ", "\n", "\n\n", "\t"]))
    return "".join(out).rstrip(" ") if rng.random() < 0.5 else "".join(out)


def train_llama3_tokenizer(folder: Path, vocab_size: int = 1200, seed: int = 0, gpt2: bool = False,
                           added: tuple[str, ...] = (), special: tuple[str, ...] | None = None) -> Path:
    """Train a byte-level BPE on random texts with Llama-3's pre-tokenizer (or GPT-2's lone ByteLevel) and
    `ignore_merges`, add Llama-3's special tokens (or `special`) after the vocabulary, save
    `folder/tokenizer.json`."""
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

    rng = random.Random(seed)
    corpus = [random_text(rng) for _ in range(3000)]
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=not gpt2))
    if gpt2:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    if added:
        tok.add_tokens(list(added))
    tok.add_special_tokens(list(special or LLAMA3_SPECIAL))
    if not gpt2 and special is None:  # Llama 3's tokenizer.json: BOS before every text (its post_processor)
        from tokenizers import processors
        bos = LLAMA3_SPECIAL[0]
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))])])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"


def reference_tokenizer(path: Path):
    """`tokenizers.Tokenizer` of `path` with special tokens encoded as text (Meta's `encode`)."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(path))
    tok.encode_special_tokens = True
    return tok


def write_tokenizer_config(folder: Path, bos: str = "<|begin_of_text|>", eos: str = "<|eot_id|>",
                           chat_template: str | None = None, **extra) -> None:
    """A `tokenizer_config.json` as the Hub's Llama-3 repos have it (the fields minillama reads)."""
    config = {"bos_token": bos, "eos_token": eos, "tokenizer_class": "PreTrainedTokenizerFast", **extra}
    if chat_template is not None:
        config["chat_template"] = chat_template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
