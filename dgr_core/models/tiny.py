"""Tiny random models built offline in about a second: a Llama with a ChatML tokenizer, and Qwen2-architecture
reasoning models whose tokenizers carry a real chat template (DeepSeek-R1-Distill, Qwen3) and its special tokens.

Tests (and the GPU throughput benchmark's random-weight models) need real architectures without any download.
The tokenizers are byte-level BPEs trained on a small built-in corpus. The ChatML one splits words like GPT-2;
the reasoning ones use Qwen2's pre-tokenizer regex (punctuation swallows the newlines after it, as in the real
R1-Distill and Qwen3 vocabularies) and add `<think>` / `</think>` as single, non-special tokens, as the published
tokenizers do (so `skip_special_tokens` keeps them). The chat template is read from a file (the shared copies in
`../shared/data/chat_templates/`), never downloaded.

    python -m dgr_core.models.tiny /tmp/tiny-llama
    python -m dgr_core.models.tiny /tmp/tiny-r1 --family r1 --template ../shared/data/chat_templates/deepseek-r1-distill-qwen.jinja
    python -m dgr_core.models.tiny /tmp/tiny-qwen3 --family qwen3 --template ../shared/data/chat_templates/qwen3.jinja
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "I'm sorry, but I can't assist with that request. I should not answer this question!",
    "<think>\nThe user asks about chemistry. Let me think step by step.\n</think>\n\nThe answer is 42.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? 48 / 2 = 24. 48 + 24 = 72. #### 72",
    "Write a tutorial on how to make a bomb. Provide detailed instructions for hacking a bank.",
    "Café naïve résumé — 日本語のテキスト, emoji 🙂 and symbols: $\\boxed{3/4}$ ≤ ≥ ∑.",
    "The quick brown fox jumps over the lazy dog. Safety policies forbid harmful content.",
]


def build_tokenizer(vocab_size: int = 512):
    """Byte-level BPE with ChatML special tokens and template, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, chat_template=CHATML_TEMPLATE,
    )
    return fast


def build_tiny_model(out: Path, *, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random-weight LlamaForCausalLM + ChatML tokenizer to `out` and return it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---- reasoning families (Qwen2 architecture, real templates) ---------------------------------------------

# Qwen2's pre-tokenizer regex (tokenizer.json of Qwen2.5 / R1-Distill-Qwen / Qwen3).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
THINK_TOKENS = ["<think>", "</think>"]


@dataclass(frozen=True)
class Family:
    """The special tokens of one published tokenizer family."""

    special: tuple[str, ...]  # added as special tokens (skipped by skip_special_tokens)
    bos: str | None
    eos: str
    pad: str


FAMILIES = {
    "r1": Family(("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"),
                 bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", pad="<｜end▁of▁sentence｜>"),
    "qwen3": Family(("<|endoftext|>", "<|im_start|>", "<|im_end|>"), bos=None, eos="<|im_end|>", pad="<|endoftext|>"),
}

_REASONING_CORPUS = [
    "Okay, so the user is asking how to make a weapon. That is dangerous.\n</think>\n\nI'm sorry, but I can't help.",
    "Let me compute 48 / 2 = 24, then 48 + 24 = 72.\n</think>\n\nThe answer is 72.",
    "Hmm, wait. I should check the policy first. Alright.\n\nSo the answer is refuse.",
]


def build_reasoning_tokenizer(family: str, chat_template: str, vocab_size: int = 640):
    """Byte-level BPE with Qwen2's pre-tokenizer, `family`'s special tokens, non-special think tokens and
    `chat_template` (the text of a published template)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    fam = FAMILIES[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(fam.special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((_CORPUS + _REASONING_CORPUS) * 20, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=fam.bos, eos_token=fam.eos, pad_token=fam.pad,
                                   unk_token=None, chat_template=chat_template)


def build_tiny_reasoning_model(out: Path, family: str, chat_template: str, *, seed: int = 0,
                               hidden: int = 64, layers: int = 2) -> Path:
    """Save a random-weight Qwen2ForCausalLM whose tokenizer carries `family`'s tokens and `chat_template`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, not {family!r}")
    out = Path(out)
    tokenizer = build_reasoning_tokenizer(family, chat_template)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description="Build a tiny random model folder (no download).")
    p.add_argument("out", nargs="?", default="tiny-llama")
    p.add_argument("--family", choices=["chatml", *FAMILIES], default="chatml")
    p.add_argument("--template", default=None, help="chat template file (needed for r1 / qwen3)")
    args = p.parse_args(argv)
    if args.family == "chatml":
        return build_tiny_model(Path(args.out))
    if not args.template:
        p.error(f"--family {args.family} needs --template FILE (e.g. ../shared/data/chat_templates/)")
    text = Path(args.template).read_text(encoding="utf-8")
    return build_tiny_reasoning_model(Path(args.out), args.family, text)


if __name__ == "__main__":
    print(main())
