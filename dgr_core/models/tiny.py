"""A tiny random Llama with a ChatML tokenizer, built offline in about a second.

Tests (and the GPU throughput benchmark's random-weight models) need real architectures without any download.
The tokenizer is a byte-level BPE trained on a small built-in corpus with the ChatML special tokens, so chat
templates, offsets and `<think>` markers behave as they do with real instruct models.

    python -m dgr_core.models.tiny /tmp/tiny-llama
"""

from __future__ import annotations

import sys
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


if __name__ == "__main__":
    print(build_tiny_model(Path(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama")))
