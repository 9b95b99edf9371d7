"""A tiny random Qwen2 model with a character-level ARC tokenizer, saved as a normal Hugging Face folder.

Used by tests and smoke runs: it loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` (and vLLM) like any model.
Every printable ASCII character (0x20–0x7E) and ``\\n`` is exactly one token, so the grid formats of the TypeScript
side (digits, letters, ``#``, backticks, spaces, newlines) tokenise one character per token and decode back exactly.
"""

from __future__ import annotations

import os
from typing import Any

import torch

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable-character map, the alphabet of byte-level BPE (space → 'Ġ', newline → 'Ċ')."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def make_char_tokenizer() -> Any:
    """Byte-level tokenizer without merges: one token per byte, so one per ASCII character.

    Ids 0–2 are ``<pad> <bos> <eos>``, then ``\\n`` (3), then 0x20–0x7E in order (4–98), then the other bytes.
    It is a ``Qwen2Tokenizer`` (byte-level BPE with an empty merge list) on purpose: ``AutoTokenizer`` always
    rebuilds a qwen2 model's tokenizer with Qwen2's own pipeline, which therefore must be the one we use.
    Any text round-trips exactly (non-ASCII as one token per UTF-8 byte).
    """
    from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

    to_char = _byte_to_unicode()
    order = [0x0A, *range(0x20, 0x7F), *(b for b in range(256) if b != 0x0A and not 0x20 <= b < 0x7F)]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for b in order:
        vocab[to_char[b]] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        clean_up_tokenization_spaces=False,
        padding_side="left",
        model_max_length=1 << 30,
    )


def make_tiny_model(
    path: str,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 8192,
    initializer_range: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a random Qwen2 causal LM (weights drawn from ``seed``) plus the char tokenizer and save both to ``path``.

    The default ``initializer_range`` 0.1 (Qwen uses 0.02) gives the random model bigger logits, which lets a LoRA
    adapter on its linear layers move the output distribution further (see the engine tests).
    """
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from .model import quiet_progress

    quiet_progress()
    if hidden_size % num_heads != 0:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
    if (hidden_size // num_heads) % 2 != 0:
        # Rotary embeddings rotate pairs of dimensions: an odd head size saves a model that cannot run.
        raise ValueError(f"hidden_size / num_heads = {hidden_size // num_heads} must be even (rotary embeddings)")
    tokenizer = make_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_position_embeddings,
        initializer_range=initializer_range,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        dtype="float32",
    )
    # Draw the weights from a private RNG stream so building a model never disturbs the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return {"path": os.path.abspath(path), "n_params": sum(p.numel() for p in model.parameters())}
