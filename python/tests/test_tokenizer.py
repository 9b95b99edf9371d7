"""The tiny model's character tokenizer: exact round trips, one token per character, same ids after reloading."""

from __future__ import annotations

import pytest
from conftest import call

from arc_ttft.tiny import make_char_tokenizer

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\n"
TEXTS = [
    "```grid shape: 3x3\n1 012\n2 340\n3 000\n```\n",
    "## Example 1\n### Input\n0 1 2\n3 4 5\n### Output\n  spaces  and\n\n\nnewlines \n",
    "I\n0123456789\nabcXYZ#@!~`'\"\\\nO\n",
    " leading and trailing spaces ",
    PRINTABLE,
    "",
]


@pytest.fixture(scope="module")
def tokenizers(tiny_path: str):
    from transformers import AutoTokenizer

    return make_char_tokenizer(), AutoTokenizer.from_pretrained(tiny_path)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact_with_one_token_per_character(tokenizers, text: str) -> None:
    for tok in tokenizers:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text)
        assert tok.decode(ids) == text


def test_every_printable_character_is_its_own_token(tokenizers) -> None:
    built, reloaded = tokenizers
    ids = [built(c, add_special_tokens=False)["input_ids"] for c in PRINTABLE]
    assert all(len(i) == 1 for i in ids)
    assert len({i[0] for i in ids}) == len(PRINTABLE)
    assert reloaded(PRINTABLE, add_special_tokens=False)["input_ids"] == [i[0] for i in ids]


def test_special_tokens(tokenizers) -> None:
    for tok in tokenizers:
        assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<bos>", "<eos>")
        assert len({tok.pad_token_id, tok.bos_token_id, tok.eos_token_id}) == 3
        # special tokens are not produced from ordinary text characters
        assert tok.eos_token_id not in tok(PRINTABLE, add_special_tokens=False)["input_ids"]


def test_count_tokens_through_dispatch(loaded) -> None:
    assert call("count_tokens", texts=TEXTS)["counts"] == [len(t) for t in TEXTS]
    assert call("count_tokens", texts=[])["counts"] == []
