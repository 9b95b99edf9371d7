"""Reduced vocabulary: keep only the tokens an ARC prompt format can produce, and shrink the model to match.

A 151k-token vocabulary (Qwen) spends most of a small model's output layer, its softmax and (with
``modules_to_save``) its trained embeddings on tokens an ARC grid never uses. The ARChitects cut the vocabulary to
the few dozen tokens their format needs; :func:`reduce_vocab` does the same for any Hugging Face causal LM, right
after loading and before LoRA is attached (so adapters and ``modules_to_save`` copies see the small matrices):

1. :func:`kept_token_ids` finds the tokens to keep (a :class:`VocabSpec`):

   - ``keep_texts``: every token the tokenizer produces for each text, and for each single character of it (the
     fixed text of the prompt format, e.g. whole prompts built for a synthetic task);
   - ``keep_chars``: every token of each character, plus every vocabulary token whose text consists only of these
     characters (``"\\n\\n"``, ``"```"``, ``"123"``), so *any* string over ``keep_chars`` (grids of any size, row
     numbers, shapes) tokenises within the kept set, whatever the tokenizer merges;
   - the EOS, PAD and BOS tokens.

2. :func:`shrink_model` keeps those rows of the input embedding and of the output layer (a tied output layer stays
   tied), in the original id order, and sets ``config.vocab_size``; token ``kept[i]`` becomes id ``i``.

3. :class:`ReducedTokenizer` wraps the original tokenizer: it encodes with it, so texts tokenise exactly as before
   (same tokens, same counts), and maps the ids through the table; decoding maps back. A text that needs a token
   outside the kept set raises :class:`VocabularyError` naming the character, never a silently wrong id.

Logits of the kept tokens are unchanged; the softmax now runs over the kept tokens only. Greedy decoding therefore
picks the same token whenever the full model's choice is a kept token, and the loss of a sample is the full model's
loss renormalised over the kept tokens.

Adapters saved from a reduced model (:func:`save_adapter`) get a ``reduced_vocab.json`` note with the kept token ids:
their embedding and output-layer tensors are indexed by the reduced ids, so :func:`check_adapter` refuses them on a
model whose vocabulary was not reduced the same way. An adapter saved from the full model loads on a reduced one
when it has no vocabulary-sized tensors (plain LoRA on the linear layers); otherwise PEFT's shape check refuses it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .errors import AdapterError, EngineError

NOTE_FILE = "reduced_vocab.json"
NOTE_FORMAT = "arc-ttft-reduced-vocab"
NOTE_VERSION = 1


class VocabularyError(EngineError, ValueError):
    """A text needs a token outside the reduced vocabulary (the message names the character and the text)."""


@dataclass(frozen=True)
class VocabSpec:
    """What a reduced vocabulary must be able to write (see the module docstring)."""

    keep_texts: tuple[str, ...] = ()
    keep_chars: str = ""
    # A tokenizer with at most this many tokens is left as it is (a character-level vocabulary gains nothing).
    skip_if_vocab_at_most: int = 0


@dataclass(frozen=True)
class Reduction:
    """A reduction in force: ``kept[new_id] = old_id`` (ascending), over a tokenizer of ``original_size`` tokens."""

    kept: tuple[int, ...]
    original_size: int

    def describe(self) -> dict[str, Any]:
        return {"kept": len(self.kept), "original_size": self.original_size}


# --------------------------------------------------------------------------------------------------- which tokens


def _encode(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def _special_ids(tokenizer: Any) -> set[int]:
    # Not the UNK token: keeping it would let an unknown character map to it silently.
    ids = (tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.bos_token_id)
    return {i for i in ids if isinstance(i, int)}


def token_texts(tokenizer: Any) -> list[str]:
    """The decoded text of every token id ``0 … len(tokenizer) - 1`` (special tokens as their content)."""
    return tokenizer.batch_decode(
        [[i] for i in range(len(tokenizer))], skip_special_tokens=False, clean_up_tokenization_spaces=False
    )


def kept_token_ids(tokenizer: Any, spec: VocabSpec) -> list[int]:
    """The ascending token ids a reduced vocabulary keeps for ``spec`` (see the module docstring)."""
    kept = _special_ids(tokenizer)
    chars = sorted(set(spec.keep_chars).union(*map(set, spec.keep_texts)))
    for ids in _encode(tokenizer, [*spec.keep_texts, *chars]):
        kept.update(ids)
    closure = set(spec.keep_chars)
    if closure:
        for i, text in enumerate(token_texts(tokenizer)):
            if text and closure.issuperset(text):
                kept.add(i)
    return sorted(kept)


# --------------------------------------------------------------------------------------------------- the model


def _remap(value: Any, table: dict[int, int]) -> Any:
    """A config's special-token id (int, list of ints or None) in the reduced ids; ids not kept are dropped."""
    if isinstance(value, int) and not isinstance(value, bool):
        return table.get(value)
    if isinstance(value, list):
        mapped = [table[v] for v in value if v in table]
        return mapped or None
    return value


def shrink_model(model: Any, kept: Sequence[int]) -> None:
    """Keep rows ``kept`` of the input embedding and the output layer, in place; a tied output layer stays tied."""
    emb = model.get_input_embeddings()
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    index = torch.tensor(list(kept), dtype=torch.long, device=emb.weight.device)
    table = {old: new for new, old in enumerate(kept)}
    with torch.no_grad():
        emb.weight = torch.nn.Parameter(
            emb.weight.index_select(0, index).clone(), requires_grad=emb.weight.requires_grad
        )
        emb.num_embeddings = len(kept)
        if getattr(emb, "padding_idx", None) is not None:
            emb.padding_idx = table.get(emb.padding_idx)
        if out is not None:
            if tied:
                out.weight = emb.weight
            else:
                w = out.weight
                out.weight = torch.nn.Parameter(
                    w.index_select(0, index.to(w.device)).clone(), requires_grad=w.requires_grad
                )
            bias = getattr(out, "bias", None)
            if bias is not None:
                out.bias = torch.nn.Parameter(
                    bias.index_select(0, index.to(bias.device)).clone(), requires_grad=bias.requires_grad
                )
            if hasattr(out, "out_features"):
                out.out_features = len(kept)
    configs = [model.config]
    text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text_config is not None and text_config is not model.config:
        configs.append(text_config)
    for config in configs:
        config.vocab_size = len(kept)
        for name in ("pad_token_id", "eos_token_id", "bos_token_id"):
            if hasattr(config, name):
                setattr(config, name, _remap(getattr(config, name), table))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        for name in ("pad_token_id", "eos_token_id", "bos_token_id", "decoder_start_token_id"):
            if getattr(gen, name, None) is not None:
                setattr(gen, name, _remap(getattr(gen, name), table))
    if isinstance(getattr(model, "vocab_size", None), int):
        model.vocab_size = len(kept)


# --------------------------------------------------------------------------------------------------- the tokenizer


class ReducedTokenizer:
    """The original tokenizer with ids mapped into the reduced vocabulary (``kept[new_id] = old_id``).

    Encoding runs the original tokenizer, so every text tokenises exactly as before; any resulting token outside
    the kept set raises :class:`VocabularyError`. It offers what the engine uses (``__call__``, ``encode``,
    ``decode``, ``batch_decode``, the special tokens and their ids, ``padding_side``, ``len``) plus the id/token
    conversions; anything else is an ``AttributeError`` rather than a silent full-vocabulary id. ``base`` is the
    original tokenizer, for id-free uses.
    """

    def __init__(self, base: Any, kept: Sequence[int]) -> None:
        self.base = base
        self.kept: tuple[int, ...] = tuple(kept)
        size = max(len(base), max(self.kept, default=-1) + 1)
        self._to_new = [-1] * size
        for new, old in enumerate(self.kept):
            self._to_new[old] = new
        self._table = torch.tensor(self._to_new, dtype=torch.long)

    # ---- sizes and special tokens

    def __len__(self) -> int:
        return len(self.kept)

    @property
    def vocab_size(self) -> int:
        return len(self.kept)

    def _new_id(self, old: int | None) -> int | None:
        if old is None or not 0 <= old < len(self._to_new):
            return None
        new = self._to_new[old]
        return new if new >= 0 else None

    def _token(self, name: str) -> str | None:
        token = getattr(self.base, name)
        return token if token is not None and self._new_id(getattr(self.base, f"{name}_id")) is not None else None

    eos_token = property(lambda self: self._token("eos_token"))
    pad_token = property(lambda self: self._token("pad_token"))
    bos_token = property(lambda self: self._token("bos_token"))
    unk_token = property(lambda self: self._token("unk_token"))
    eos_token_id = property(lambda self: self._new_id(self.base.eos_token_id))
    pad_token_id = property(lambda self: self._new_id(self.base.pad_token_id))
    bos_token_id = property(lambda self: self._new_id(self.base.bos_token_id))
    unk_token_id = property(lambda self: self._new_id(self.base.unk_token_id))

    @property
    def all_special_ids(self) -> list[int]:
        return [n for n in map(self._new_id, self.base.all_special_ids) if n is not None]

    @property
    def padding_side(self) -> str:
        return self.base.padding_side

    @padding_side.setter
    def padding_side(self, value: str) -> None:
        self.base.padding_side = value

    @property
    def model_max_length(self) -> int:
        return self.base.model_max_length

    @property
    def name_or_path(self) -> str:
        return self.base.name_or_path

    # ---- ids

    def _map_ids(self, ids: Sequence[int], text: str | None, where: int | None) -> list[int]:
        to_new = self._to_new
        out = [to_new[i] if 0 <= i < len(to_new) else -1 for i in ids]
        if -1 in out:
            self._raise(ids[out.index(-1)], out.index(-1), text, where)
        return out

    def _map_tensor(self, ids: torch.Tensor, texts: list[str] | None) -> torch.Tensor:
        table = self._table.to(ids.device)
        mapped = table[ids.clamp(0, len(table) - 1)]
        bad = (mapped < 0) | (ids >= len(table)) | (ids < 0)
        if bool(bad.any()):
            pos = bad.nonzero()[0].tolist()
            row = pos[0] if ids.dim() > 1 else None
            text = texts[row if row is not None else 0] if texts else None
            self._raise(int(ids[tuple(pos)]), None, text, row)
        return mapped

    def _raise(self, old: int, position: int | None, text: str | None, where: int | None) -> None:
        """Name what cannot be written: the character(s) of the offending token that have no kept token alone."""
        piece = self.base.decode([old], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        context = ""
        if text is not None and position is not None and getattr(self.base, "is_fast", False):
            offsets = self.base(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            if position < len(offsets):
                start, end = offsets[position]
                piece = text[start:end] or piece
                context = f" at character {start} ({text[max(0, start - 12) : end + 12]!r})"
        chars = [c for c in dict.fromkeys(piece) if not self._writable(c)]
        which = f" {where}" if where is not None else ""
        if chars:
            what = ", ".join(repr(c) for c in chars)
            raise VocabularyError(
                f"text{which} contains {what}{context}, outside the reduced vocabulary (token {piece!r}, id {old} "
                "of the full vocabulary); add the character to reduce_vocab.keep_chars, or load the model without "
                "reduce_vocab"
            )
        raise VocabularyError(
            f"text{which} tokenises {piece!r}{context} as one token (id {old} of the full vocabulary) that the "
            "reduced vocabulary does not keep, though each of its characters is kept; add a text containing it to "
            "reduce_vocab.keep_texts"
        )

    def _writable(self, char: str) -> bool:
        ids = self.base(char, add_special_tokens=False)["input_ids"]
        return bool(ids) and all(self._new_id(i) is not None for i in ids)

    def _map_encoding(self, enc: Any, texts: list[str] | None) -> Any:
        ids = enc["input_ids"]
        if isinstance(ids, torch.Tensor):
            enc["input_ids"] = self._map_tensor(ids, texts)
        elif ids and isinstance(ids[0], (list, tuple)):
            enc["input_ids"] = [
                self._map_ids(row, texts[i] if texts else None, i if len(ids) > 1 else None)
                for i, row in enumerate(ids)
            ]
        else:
            enc["input_ids"] = self._map_ids(ids, texts[0] if texts else None, None)
        return enc

    def __call__(self, text: Any, *args: Any, **kwargs: Any) -> Any:
        """Like the original tokenizer's call; ``input_ids`` come back in the reduced ids."""
        enc = self.base(text, *args, **kwargs)
        texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
        if texts is not None and not all(isinstance(t, str) for t in texts):
            texts = None
        return self._map_encoding(enc, texts)

    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]:
        if kwargs.get("return_tensors") is not None:
            raise TypeError("ReducedTokenizer.encode returns a list; call the tokenizer for tensors")
        return self._map_ids(self.base.encode(text, *args, **kwargs), text, None)

    def _old_ids(self, ids: Any) -> list[int]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, int):
            ids = [ids]
        kept = self.kept
        out = []
        for i in ids:
            if not 0 <= i < len(kept):
                raise VocabularyError(f"token id {i} is outside the reduced vocabulary of {len(kept)} tokens")
            out.append(kept[i])
        return out

    def decode(self, ids: Any, *args: Any, **kwargs: Any) -> str:
        return self.base.decode(self._old_ids(ids), *args, **kwargs)

    def batch_decode(self, sequences: Iterable[Any], *args: Any, **kwargs: Any) -> list[str]:
        return [self.decode(s, *args, **kwargs) for s in sequences]

    def convert_ids_to_tokens(self, ids: Any) -> Any:
        if isinstance(ids, int):
            return self.base.convert_ids_to_tokens(self._old_ids(ids)[0])
        return self.base.convert_ids_to_tokens(self._old_ids(ids))

    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        """Reduced id of each token; ``None`` for a token the reduced vocabulary does not keep."""
        old = self.base.convert_tokens_to_ids(tokens)
        return self._new_id(old) if isinstance(tokens, str) else [self._new_id(o) for o in old]

    def get_vocab(self) -> dict[str, int]:
        tokens = self.base.convert_ids_to_tokens(list(self.kept))
        return {t: i for i, t in enumerate(tokens)}

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not defined above: refuse, since the original's would speak full-vocab ids.
        raise AttributeError(
            f"ReducedTokenizer has no {name!r}: the vocabulary is reduced, so the original tokenizer's ids do not "
            "apply (use .base for id-free uses)"
        )

    def __repr__(self) -> str:
        return f"ReducedTokenizer({type(self.base).__name__}, kept {len(self.kept)} of {len(self.base)} tokens)"


# --------------------------------------------------------------------------------------------------- all together


def reduce_vocab(model: Any, tokenizer: Any, spec: VocabSpec) -> tuple[Any, Reduction | None]:
    """Shrink ``model`` in place to the tokens ``spec`` needs; return the tokenizer to use and the reduction.

    ``(tokenizer, None)`` when the tokenizer has at most ``spec.skip_if_vocab_at_most`` tokens (nothing done).
    """
    if len(tokenizer) <= spec.skip_if_vocab_at_most:
        return tokenizer, None
    kept = kept_token_ids(tokenizer, spec)
    rows = model.get_input_embeddings().weight.shape[0]
    if kept and kept[-1] >= rows:
        raise VocabularyError(f"token id {kept[-1]} is beyond the model's {rows} embedding rows")
    shrink_model(model, kept)
    return ReducedTokenizer(tokenizer, kept), Reduction(kept=tuple(kept), original_size=len(tokenizer))


# --------------------------------------------------------------------------------------------------- adapter notes


def save_adapter(peft_model: Any, path: str, reduction: Reduction | None, tokenizer: Any = None) -> str:
    """Save the adapter (PEFT's layout, as :func:`arc_ttft.lora.save_adapter`) plus its vocabulary note."""
    from .lora import save_adapter as save_peft

    if reduction is None:
        out = save_peft(peft_model, path)
    else:
        # PEFT's "auto" sees the vocabulary differ from the base's config.json and would store the base embedding
        # and output layer too (under names its own loading then rejects): the note says how to rebuild them.
        os.makedirs(path, exist_ok=True)
        peft_model.save_pretrained(
            path, safe_serialization=True, save_embedding_layers=False, selected_adapters=["default"]
        )
        out = os.path.abspath(path)
    write_note(out, reduction, tokenizer)
    return out


def write_note(path: str, reduction: Reduction | None, tokenizer: Any = None) -> None:
    """Record in an adapter folder which vocabulary its tensors index (removes a stale note when not reduced)."""
    note = os.path.join(path, NOTE_FILE)
    if reduction is None:
        if os.path.exists(note):
            os.remove(note)
        return
    base = getattr(tokenizer, "base", None)
    data = {
        "format": NOTE_FORMAT,
        "version": NOTE_VERSION,
        "original_vocab_size": reduction.original_size,
        "kept_token_ids": list(reduction.kept),
        "kept_tokens": base.convert_ids_to_tokens(list(reduction.kept)) if base is not None else None,
    }
    with open(note, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)


def read_note(path: str) -> dict[str, Any] | None:
    """The ``reduced_vocab.json`` of an adapter folder, or ``None`` when it has none."""
    note = os.path.join(path, NOTE_FILE)
    if not os.path.isfile(note):
        return None
    try:
        with open(note, encoding="utf-8") as f:
            data = json.load(f)
        kept = data["kept_token_ids"]
        if not isinstance(kept, list) or not all(isinstance(i, int) for i in kept):
            raise ValueError("kept_token_ids must be a list of integers")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AdapterError(f"adapter {path!r}: unreadable {NOTE_FILE}: {e}") from e
    return data


def check_adapter(path: str, reduction: Reduction | None) -> None:
    """Refuse an adapter whose recorded reduced vocabulary differs from the loaded model's.

    An adapter without a note was saved from a full-vocabulary model: plain LoRA on the linear layers fits a reduced
    model too, and tensors of vocabulary size fail PEFT's shape check.
    """
    note = read_note(path) if os.path.isdir(path) else None
    if note is None:
        return
    kept = note["kept_token_ids"]
    if reduction is None:
        raise AdapterError(
            f"adapter {path!r} was saved from a model with a reduced vocabulary ({len(kept)} of "
            f"{note.get('original_vocab_size')} tokens, see its {NOTE_FILE}); load the model with the same "
            "reduce_vocab to use it"
        )
    if tuple(kept) != reduction.kept:
        raise AdapterError(
            f"adapter {path!r} was saved with another reduced vocabulary ({len(kept)} tokens, the loaded model keeps "
            f"{len(reduction.kept)}); load the model with the reduce_vocab it was trained with"
        )
