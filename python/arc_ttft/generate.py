"""Generate answers for a batch of prompts with the current adapter: left-padded, KV-cached, greedy or sampled.

A plain decoding loop rather than ``model.generate``: a model's ``generation_config.json`` (repetition penalty,
top-k, sampling defaults of instruct checkpoints) must not leak into ARC decoding, and we want the log-probability
of each chosen token under the model's own distribution (before temperature / top-p).

Fast paths (see docs/performance.md): a row whose sequence ended (EOS or a stop string, i.e. its grid is complete)
leaves the batch and the KV cache at once, so the remaining steps run on the unfinished rows only; and with
``merge`` the LoRA update is merged into the base weights for the call (no adapter matmuls per decoding step) and
the exact base weights are copied back afterwards.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from . import multi_lora
from .errors import PayloadError, TrainingDivergedError
from .model import supports_logits_to_keep
from .tokens import encode_batch


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int | None = None  # None: all prompts in one batch
    stop: tuple[str, ...] = ()
    merge: bool = False  # merge LoRA into the base weights for the call (bit-exact restore after)
    max_new_tokens_each: tuple[int, ...] | None = None  # per prompt (each ≤ max_new_tokens); None: max_new_tokens
    static_cache: bool = False  # fixed-shape steps over a bucketed static KV cache (static_decode.py)
    compile: bool = False  # with static_cache: torch.compile the step (CUDA graphs on CUDA)


def row_limits(cfg: GenerateConfig, n: int) -> list[int]:
    """The new-token limit of each of ``n`` prompts."""
    if cfg.max_new_tokens_each is None:
        return [cfg.max_new_tokens] * n
    if len(cfg.max_new_tokens_each) != n:
        raise PayloadError("generate.max_new_tokens", f"{len(cfg.max_new_tokens_each)} limits for {n} prompts")
    return [min(m, cfg.max_new_tokens) for m in cfg.max_new_tokens_each]


def _pick(logits: torch.Tensor, cfg: GenerateConfig, gen: torch.Generator | None) -> torch.Tensor:
    if not cfg.do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / cfg.temperature, dim=-1)
    if cfg.top_p < 1.0:
        sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (the top token always stays)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs >= cfg.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, sorted_idx, sorted_probs)
    try:
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    except RuntimeError as e:
        if "probability tensor" not in str(e):
            raise
        # NaN or inf logits: the adapter's weights blew up in training (greedy decoding just emits garbage).
        raise TrainingDivergedError(
            f"the model's next-token probabilities are not finite ({e}): reset the adapter"
        ) from e


@contextlib.contextmanager
def merged_adapter(model: Any) -> Iterator[int]:
    """LoRA merged into the base weights for the duration; afterwards the adapter is unmerged and the base weights
    are overwritten with copies taken before the merge, so not one bit of the base model drifts across tasks (an
    unmerge alone would leave bfloat16 rounding behind). Yields the number of merged layers."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        yield 0
        return
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and not m.merged]
    saved = []
    for m in layers:
        base = m.get_base_layer()
        bias = getattr(base, "bias", None)
        saved.append((base.weight.detach().clone(), None if bias is None else bias.detach().clone()))
    merged: list[Any] = []
    try:
        with torch.no_grad():
            for m in layers:
                m.merge()
                merged.append(m)
        yield len(merged)
    finally:
        with torch.no_grad():
            for m, (weight, bias) in zip(layers, saved, strict=True):
                if m in merged:
                    m.unmerge()
                base = m.get_base_layer()
                base.weight.copy_(weight)
                if bias is not None:
                    base.bias.copy_(bias)


def end_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The tokens that end a row: the tokenizer's EOS and every ``eos_token_id`` of the model's generation config.

    Instruct models often list several (Qwen2.5-Instruct: ``<|im_end|>`` and ``<|endoftext|>``); transformers'
    ``generate`` and vLLM stop on all of them, so this loop does too and both backends end rows at the same token.
    """
    ids = {tokenizer.eos_token_id}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(extra if isinstance(extra, list | tuple) else [extra])
    return frozenset(int(i) for i in ids if isinstance(i, int) and not isinstance(i, bool))


@dataclass
class Rows:
    """Per-row tokens, log-probs and finish reasons of one chunk, and how a row finishes: EOS, a stop string in its
    decoded tail, or its token limit. Shared by both decoding loops (this module's and :mod:`.static_decode`)."""

    tokenizer: Any
    stop: tuple[str, ...]
    limits: list[int]
    new_ids: list[list[int]]
    logprobs: list[list[float]]
    reason: list[str | None]
    window: int  # decoded tail (in text tokens) searched for a stop string
    special: frozenset[int]  # tokens that decode to nothing (skip_special_tokens): not counted in the window
    ends: frozenset[int]  # tokens that end a row as "eos" (see end_token_ids)

    @classmethod
    def start(cls, tokenizer: Any, limits: list[int], stop: tuple[str, ...], ends: frozenset[int]) -> Rows:
        n = len(limits)
        # In bytes: a byte-level tokenizer can spend a token per byte (4 for some characters).
        window = max((len(s.encode("utf-8")) for s in stop), default=0) + 4
        special = frozenset(getattr(tokenizer, "all_special_ids", None) or ())
        rows = [[] for _ in range(n)], [[] for _ in range(n)], [None] * n
        return cls(tokenizer, stop, limits, *rows, window, special, ends)

    def _tail(self, ids: list[int]) -> list[int]:
        """The last ``window`` tokens of ``ids`` that decode to text, special tokens between them kept."""
        start, seen = len(ids), 0
        while start > 0 and seen < self.window:
            start -= 1
            seen += ids[start] not in self.special
        return ids[start:]

    def record(self, active: list[int], chosen: list[int], chosen_lp: list[float]) -> list[int]:
        """Append each active row's token and log-prob; return the positions in ``active`` of the rows still going."""
        for row, tok, lp in zip(active, chosen, chosen_lp, strict=True):
            self.new_ids[row].append(tok)
            self.logprobs[row].append(lp)
            if tok in self.ends:
                self.reason[row] = "eos"
            elif self.stop:
                tail = self.tokenizer.decode(self._tail(self.new_ids[row]), skip_special_tokens=True)
                if any(s in tail for s in self.stop):
                    self.reason[row] = "stop"
            if self.reason[row] is None and len(self.new_ids[row]) >= self.limits[row]:
                self.reason[row] = "length"
        return [j for j, row in enumerate(active) if self.reason[row] is None]

    def results(self) -> list[dict]:
        """The output dicts: text without EOS / from the first stop string on, token count, mean log-prob, reason, and
        the generated token ids with their log-probs (the end token included)."""
        results = []
        for ids, lps, why in zip(self.new_ids, self.logprobs, self.reason, strict=True):
            text_ids = ids[:-1] if why == "eos" else ids
            text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
            if why == "stop":
                cut = min(text.find(s) for s in self.stop if s in text)
                text = text[:cut]
            results.append(
                {
                    "text": text,
                    "n_tokens": len(ids),
                    "mean_logprob": sum(lps) / len(lps) if lps else 0.0,
                    "finish_reason": why or "length",
                    "token_ids": ids,
                    "token_logprobs": lps,
                }
            )
        return results


def _select_rows(past: Any, idx: torch.Tensor) -> None:
    """Keep only the batch rows ``idx`` of a KV cache, in place."""
    if hasattr(past, "batch_select_indices"):
        past.batch_select_indices(idx)
    else:  # older caches: beam reordering with fewer indices selects rows the same way
        past.reorder_cache(idx)


def _left_padded(tokenizer: Any, prompt_ids: list[list[int]], device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of the prompts, left-padded to the longest."""
    n, length = len(prompt_ids), max(len(p) for p in prompt_ids)
    input_ids = torch.full((n, length), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, length - len(ids) :] = 1
    return input_ids.to(device), mask.to(device)


def _prefill(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]], device: Any, mixed: dict[str, Any]
) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward pass over the left-padded prompts: the KV cache, each row's next-token logits, the mask and each
    row's last position."""
    input_ids, mask = _left_padded(tokenizer, prompt_ids, device)
    # Positions count real tokens only, so a left-padded row sees the same positions as when run alone.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if supports_logits_to_keep(model) else {}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, **extra, **mixed)
    return out.past_key_values, out.logits[:, -1, :], mask, position_ids[:, -1:]


def _prefill_by_adapter(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]], names: list[str], device: Any
) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_prefill` for a mixed batch, one pass per adapter: each task's rows are padded only to its own longest
    prompt (tasks' prompts differ by up to 20× in length) and run through one adapter, with no per-row split. The
    caches are then joined, left-padded to the longest, into one cache for the mixed decoding steps."""
    from transformers import DynamicCache

    groups: dict[str, list[int]] = {}
    for row, name in enumerate(names):
        groups.setdefault(name, []).append(row)
    parts = []
    for name, rows in groups.items():
        past, logits, mask, last_pos = _prefill(
            model, tokenizer, [prompt_ids[r] for r in rows], device, {"adapter_names": [name] * len(rows)}
        )
        layers = getattr(past, "layers", None)
        if layers is None or any(getattr(layer, "keys", None) is None for layer in layers):
            return _prefill(model, tokenizer, prompt_ids, device, {"adapter_names": names})  # an unusual cache
        idx = torch.tensor(rows, device=device)
        parts.append((idx, [(layer.keys, layer.values) for layer in layers], logits, mask, last_pos))
    n, length = len(prompt_ids), max(mask.shape[1] for *_, mask, _ in parts)
    logits = torch.empty((n, parts[0][2].shape[-1]), dtype=parts[0][2].dtype, device=device)
    mask = torch.zeros((n, length), dtype=torch.long, device=device)
    last_pos = torch.empty((n, 1), dtype=torch.long, device=device)
    joined = DynamicCache()
    for layer_idx in range(len(parts[0][1])):
        k0, v0 = parts[0][1][layer_idx]
        keys = k0.new_zeros((n, k0.shape[1], length, k0.shape[3]))
        values = v0.new_zeros((n, v0.shape[1], length, v0.shape[3]))
        for idx, kv, *_ in parts:
            k, v = kv[layer_idx]
            keys[idx, :, length - k.shape[2] :] = k  # right-aligned: the padding stays on the left, masked
            values[idx, :, length - v.shape[2] :] = v
        joined.update(keys, values, layer_idx)
    for idx, _, part_logits, part_mask, part_pos in parts:
        logits[idx] = part_logits
        mask[idx, length - part_mask.shape[1] :] = part_mask
        last_pos[idx] = part_pos
    return joined, logits, mask, last_pos


def _chunk(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    cfg: GenerateConfig,
    gen: Any,
    adapter_names: list[str] | None = None,
    limits: list[int] | None = None,
    stacked: bool = False,
) -> list[dict]:
    """Decode one chunk. A mixed-adapter batch (``adapter_names``): row i runs through adapter ``adapter_names[i]``,
    read from :mod:`.multi_lora`'s stacked copies when ``stacked`` (see :func:`_per_row_ok`), else through PEFT's
    mixed-adapter batches; either way each row's adapter leaves the batch with the row."""
    device = next(model.parameters()).device
    n = len(prompt_ids)
    names = list(adapter_names) if adapter_names is not None else None
    stacks = None
    if names is not None and len(set(names)) > 1:
        past, logits, mask, last_pos = _prefill_by_adapter(model, tokenizer, prompt_ids, names, device)
        if stacked:
            # The decoding steps read each row's adapter from stacked copies (no per-adapter split in each step).
            distinct = list(dict.fromkeys(names))
            stacks = multi_lora.Stacks.allocate(model, n, len(distinct), device)
            stacks.load(distinct, [distinct.index(name) for name in names])
            names = None
    else:
        past, logits, mask, last_pos = _prefill(model, tokenizer, prompt_ids, device, _mixed(names))

    active = list(range(n))  # the rows still decoding, in batch order; finished rows leave the batch
    rows = Rows.start(
        tokenizer, limits if limits is not None else [cfg.max_new_tokens] * n, cfg.stop, end_token_ids(model, tokenizer)
    )
    with multi_lora.patched(stacks) if stacks is not None else contextlib.nullcontext():
        for _ in range(max(rows.limits)):
            logits = logits.float()
            chosen = _pick(logits, cfg, gen)
            chosen_lp = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
            keep = rows.record(active, chosen.tolist(), chosen_lp.tolist())
            if not keep:
                break
            if len(keep) < len(active):
                # A finished grid costs nothing more: its row leaves the batch and the KV cache.
                idx = torch.tensor(keep, dtype=torch.long, device=device)
                _select_rows(past, idx)
                chosen, mask, last_pos = chosen[idx], mask[idx], last_pos[idx]
                active = [active[j] for j in keep]
                if names is not None:
                    names = [names[j] for j in keep]
                if stacks is not None:
                    stacks.keep(idx)
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=-1)
            last_pos = last_pos + 1
            out = model(
                input_ids=chosen[:, None],
                attention_mask=mask,
                position_ids=last_pos,
                past_key_values=past,
                use_cache=True,
                **_mixed(names),
            )
            past, logits = out.past_key_values, out.logits[:, -1, :]
    return rows.results()


def _mixed(names: list[str] | None) -> dict[str, Any]:
    """The model-call keyword of PEFT's mixed-adapter batches (nothing for the active adapter)."""
    return {"adapter_names": names} if names is not None else {}


def _per_row_ok(model: Any, names: list[str]) -> bool:
    """Whether these adapters can be mixed per row from stacked copies (:mod:`.multi_lora`)."""
    return multi_lora.unsupported_reason(model, list(dict.fromkeys(names))) is None


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    cfg: GenerateConfig,
    adapter_names: list[str] | None = None,
) -> dict[str, Any]:
    """Complete every prompt; outputs come back in prompt order.

    ``cfg.max_new_tokens_each`` (one limit per prompt, each ≤ ``max_new_tokens``) lets prompts of several tasks share
    a batch and still stop where each would alone.

    ``adapter_names`` (one PEFT adapter name per prompt) decodes prompts of several adapters in one batch: each row
    reads its adapter from :mod:`.multi_lora`'s stacked copies, or, for adapters it cannot stack (e.g.
    ``modules_to_save``), through PEFT's mixed-adapter batches (the adapter must stay unmerged, so ``merge`` is
    ignored then). ``None``: the active adapter. ``cfg.static_cache`` decodes with
    :func:`.static_decode.decode_static` (same outputs, fixed shapes: compilable), a stackable mixed batch too.

    Each output: ``text`` (EOS and any stop string removed), ``n_tokens`` (generated tokens, counting the EOS or the
    token that completed a stop string), ``mean_logprob`` (mean log-probability of those tokens, ≤ 0) and
    ``finish_reason`` (``eos``, ``stop`` or ``length``). Prompts are grouped longest first into chunks of
    ``batch_size`` to limit padding; sampling draws from one generator seeded once per call.
    """
    start = time.perf_counter()
    ids = encode_batch(tokenizer, prompts)
    for i, p in enumerate(ids):
        if not p:
            raise PayloadError(f"generate.prompts[{i}]", "tokenises to nothing: there is nothing to continue")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(cfg.seed) if cfg.do_sample else None
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
    size = cfg.batch_size or max(1, len(prompts))
    limits = row_limits(cfg, len(prompts))
    if adapter_names is not None:
        if len(adapter_names) != len(prompts):
            raise PayloadError("generate.adapters", f"{len(adapter_names)} names for {len(prompts)} prompts")
        if cfg.merge:  # a merged adapter cannot be mixed per row
            cfg = dataclasses.replace(cfg, merge=False)
    # Whether the adapters can be mixed from stacked copies: asked once per call (it walks the model's modules).
    stacked = adapter_names is not None and _per_row_ok(model, adapter_names)
    outputs: list[dict[str, Any] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with merged_adapter(model) if cfg.merge else contextlib.nullcontext(), torch.inference_mode():
            for s in range(0, len(order), size):
                idx = order[s : s + size]
                names = [adapter_names[i] for i in idx] if adapter_names is not None else None
                lims = [limits[i] for i in idx]
                chunk_ids = [ids[i] for i in idx]
                if cfg.static_cache and (names is None or stacked):
                    from .static_decode import decode_static

                    rows = decode_static(
                        model, tokenizer, chunk_ids, cfg, gen, compile=cfg.compile, limits=lims, adapter_names=names
                    )
                else:
                    rows = _chunk(model, tokenizer, chunk_ids, cfg, gen, names, lims, stacked)
                for i, res in zip(idx, rows, strict=True):
                    outputs[i] = res
    finally:
        model.train(was_training)
    return {
        "outputs": outputs,
        "tokens": sum(o["n_tokens"] for o in outputs if o is not None),
        "seconds": time.perf_counter() - start,
    }
