"""Tokenisation shared by training, generation and counting, so all three see exactly the same ids.

Texts are encoded as raw text, without special tokens (no BOS, no chat template): the caller's prompt is fed as is.
A training sample is therefore ``len(prompt) + len(answer) + 1`` tokens long (the 1 is the EOS appended after the
answer), with lengths as :func:`count_tokens` reports them.
"""

from __future__ import annotations

from typing import Any


def encode_batch(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Number of tokens of each text, as the engine would feed it."""
    return [len(ids) for ids in encode_batch(tokenizer, texts)]
