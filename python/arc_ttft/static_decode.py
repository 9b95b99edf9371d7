"""Decoding over a preallocated (static) KV cache with fixed-shape steps, optionally ``torch.compile``'d.

The dynamic loop in :mod:`.generate` grows its KV cache every step and drops finished rows, so every step has a new
shape: nothing can be captured once and replayed. Here one step always has the same shapes (the batch padded to a
bucket, one token per row, a cache of a bucketed length), so it compiles once per bucket and, on CUDA with
``mode="reduce-overhead"``, replays as a CUDA graph: no per-step Python or kernel-launch cost.

What stays the same as :func:`.generate._chunk` (and is tested against it): left padding, positions that count real
tokens only, greedy or sampled picks (the sampler sees exactly the rows ``_chunk`` would, in the same order, so a seeded
generator draws the same tokens), the log-probability of each chosen token, EOS and stop strings, and the output
dicts. What differs: finished rows and the padding rows of the batch bucket keep stepping (their outputs are dropped),
and the cache holds ``bucket_length`` slots whatever the prompt; masked slots contribute exactly nothing.

Several tasks in one batch (``adapter_names``): the prefill runs per adapter as in the dynamic loop (each task's rows
padded to its own longest prompt, through PEFT), and the steps read each row's adapter from :mod:`.multi_lora`'s
stacked copies by a row index, so their shapes do not depend on the rows' adapters; the bucket key then also holds
the stacks' capacity, and the stacks (one copy of each adapter in play) live with the bucket.

Buckets and memory. The batch is padded to :func:`batch_bucket` (a power of two up to 64, then a multiple of 64) and
the cache to :func:`length_bucket` (prompt + ``max_new_tokens`` rounded up to a multiple of :data:`LENGTH_STEP`). Each
model keeps at most :data:`MAX_ENTRIES` caches (least recently used first out), each with its compiled step. One cache
holds ``2 × layers × batch × kv_heads × length × head_dim`` values of the model's dtype: for Qwen2-0.5B in bfloat16
(24 layers, 2 KV heads of 64) that is 12 KiB per slot, so batch 16 × 2,048 slots is 384 MiB, and the bound 4 caches
1.5 GiB. On CUDA the captured graphs hold their own activation memory on top (about one decode step's worth each;
not measured yet: no GPU was lent to the session that wrote this). :func:`release` drops a model's caches and
compiled steps at once (e.g. before the model is unloaded); otherwise they go when the model is garbage-collected.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import compiling, multi_lora
from .errors import PayloadError
from .generate import GenerateConfig, Rows, _pick, end_token_ids
from .model import supports_logits_to_keep

FIELD = "generate.static_cache"
"""The payload field the errors of this module name (the option that asks for this decoding path)."""
LENGTH_STEP = 256
"""Cache lengths are rounded up to a multiple of this, so prompts of similar length share one compiled step."""
MAX_ENTRIES = 4
"""Caches (and compiled steps) kept per model; the least recently used one is dropped beyond this."""
_OWNER = "static_decode"  # this module's key in the model's store of compiled things (compiling.kept)


def batch_bucket(n: int) -> int:
    """The batch size ``n`` rows are padded to: the next power of two up to 64, then the next multiple of 64."""
    if n < 1:
        raise ValueError(f"batch of {n} rows")
    return 1 << (n - 1).bit_length() if n <= 64 else -(-n // 64) * 64


def length_bucket(prompt_len: int, max_new_tokens: int) -> int:
    """Cache slots for a prompt of ``prompt_len`` tokens and ``max_new_tokens`` new ones, rounded up to the bucket."""
    need = prompt_len + max_new_tokens
    return -(-need // LENGTH_STEP) * LENGTH_STEP


@dataclass
class _Entry:
    """One bucket's cache and the fixed-address inputs of its decoding step."""

    cache: Any  # transformers.StaticCache
    ids: torch.Tensor  # (batch, 1) the token each row feeds next
    pos: torch.Tensor  # (batch, 1) its position
    mask: torch.Tensor  # (batch, length) 1 on real prompt tokens and on every generated slot
    eager: Callable[[], torch.Tensor]
    compiled: Callable[[], torch.Tensor] | None = None
    stacks: multi_lora.Stacks | None = None  # per-row adapters (a mixed batch); None: the model's active adapter


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def unsupported_reason(model: Any) -> str | None:
    """Why ``model`` cannot decode over a static cache (``None`` when it can)."""
    from transformers import StaticCache
    from transformers.cache_utils import StaticLayer

    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return "prompt-learning adapters (prefix/prompt tuning) add cache entries of their own"
    config = _base(model).config
    attn = getattr(config, "_attn_implementation", None)
    if attn not in ("sdpa", "eager"):
        # flash-attention kernels take no 2D padding mask over a preallocated cache; flex needs its own mask path
        return f"attention implementation {attn!r} (only 'sdpa' and 'eager' are supported)"
    try:
        probe = StaticCache(config=config, max_cache_len=LENGTH_STEP)
    except Exception as e:  # noqa: BLE001 - any failure means the architecture has no static cache
        return f"no static KV cache for model type {config.model_type!r}: {e}"
    kinds = {type(layer).__name__ for layer in probe.layers}
    if kinds != {StaticLayer.__name__}:
        # sliding-window, linear-attention or indexed layers keep state that is not a plain slot per token
        return f"model type {config.model_type!r} has cache layers {sorted(kinds)} (only full attention is supported)"
    return None


def _store(model: Any) -> OrderedDict[tuple, _Entry]:
    return compiling.kept(model).setdefault(_OWNER, OrderedDict())


def release(model: Any) -> int:
    """Drop every cache and compiled step kept for ``model``; returns how many buckets were dropped."""
    store = compiling.kept(model).pop(_OWNER, None)
    return 0 if store is None else len(store)


def cached_buckets(model: Any) -> list[tuple[int, int, torch.dtype, torch.device, int]]:
    """The ``(batch, length, dtype, device, adapters)`` buckets kept for ``model``, least recently used first
    (``adapters``: the stack capacity of a mixed batch, 0 for the active adapter)."""
    return list(compiling.kept(model).get(_OWNER, {}))


def _entry(
    model: Any, batch: int, length: int, dtype: torch.dtype, device: torch.device, capacity: int = 0
) -> _Entry:
    from transformers import StaticCache

    store = _store(model)
    key = (batch, length, dtype, device, capacity)
    entry = store.get(key)
    if entry is not None:
        store.move_to_end(key)
        entry.cache.reset()  # zeroes the slots and the length in place: the addresses the graphs saw stay valid
        return entry
    reason = unsupported_reason(model)
    if reason is not None:
        raise PayloadError(FIELD, f"static-cache decoding does not support this model: {reason}")
    while len(store) >= MAX_ENTRIES:
        store.popitem(last=False)
    cache = StaticCache(config=_base(model).config, max_cache_len=length)
    ids = torch.zeros((batch, 1), dtype=torch.long, device=device)
    pos = torch.zeros((batch, 1), dtype=torch.long, device=device)
    mask = torch.zeros((batch, length), dtype=torch.long, device=device)

    def step() -> torch.Tensor:
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        return out.logits[:, -1, :]

    stacks = multi_lora.Stacks.allocate(model, batch, capacity, device) if capacity else None
    entry = _Entry(cache=cache, ids=ids, pos=pos, mask=mask, eager=step, stacks=stacks)
    store[key] = entry
    return entry


def _compiled(entry: _Entry, device: torch.device) -> Callable[[], torch.Tensor]:
    if entry.compiled is None:
        static = [entry.ids, entry.pos, entry.mask]
        if entry.stacks is not None:
            static += [entry.stacks.idx]
            static += [t for layer in entry.stacks.layers for t in (layer.a, layer.b, layer.scaling)]
        for t in static:
            torch._dynamo.mark_static_address(t)  # written in place between steps: no copy into graph inputs
        mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs; CPU has no launch cost to hide
        # one code object per bucket: buckets do not evict each other's graphs, which die with the bucket
        entry.compiled = compiling.compiled(
            entry.eager, "compiled decoding (decode 'compiled')", mode=mode, dynamic=False, fullgraph=False
        )
    return entry.compiled


def decode_static(
    model: Any,
    tokenizer: Any,
    prompt_ids: list[list[int]],
    cfg: GenerateConfig,
    gen: Any,
    *,
    compile: bool,
    limits: list[int] | None = None,
    adapter_names: list[str] | None = None,
) -> list[dict]:
    """Complete ``prompt_ids`` like :func:`.generate._chunk` (same outputs, same keys, same order), decoding with
    fixed-shape steps over a bucketed static KV cache; ``compile`` compiles the step (CUDA graphs on CUDA).
    ``adapter_names`` (one PEFT adapter per prompt) mixes adapters per row: the prefill runs per adapter as in
    :func:`.generate._prefill_by_adapter`, and the steps read each row's adapter from :mod:`.multi_lora`'s stacks
    (check :func:`.multi_lora.unsupported_reason` first); the bucket then also has the stacks' capacity.

    Call it as ``_chunk`` is called: model in eval mode, under ``torch.inference_mode()`` (entered here too). Raises
    :class:`PayloadError` (field :data:`FIELD`) for a model whose cache or attention this path does not support.
    """
    if not prompt_ids or any(not p for p in prompt_ids):
        raise ValueError("decode_static needs at least one prompt, and no empty prompt")
    device = next(model.parameters()).device
    dtype = _base(model).dtype  # the base weights' (PEFT may keep adapter weights in float32)
    n, prompt_len = len(prompt_ids), max(len(p) for p in prompt_ids)
    batch, length = batch_bucket(n), length_bucket(prompt_len, cfg.max_new_tokens)
    distinct = list(dict.fromkeys(adapter_names)) if adapter_names is not None else []
    with torch.inference_mode():
        capacity = multi_lora.capacity_bucket(len(distinct)) if distinct else 0
        entry = _entry(model, batch, length, dtype, device, capacity)
        logits = _prefill(model, tokenizer, prompt_ids, adapter_names, entry)
        if entry.stacks is not None:
            entry.stacks.load(distinct, [distinct.index(name) for name in adapter_names or []])
        step = _compiled(entry, device) if compile else entry.eager
        with multi_lora.patched(entry.stacks) if entry.stacks is not None else contextlib.nullcontext():
            ends = end_token_ids(model, tokenizer)
            return _steps(tokenizer, cfg, gen, entry, step, logits, limits, n, ends, compile and device.type == "cuda")


def _fill(entry: _Entry, n: int, prompt_len: int, mask: torch.Tensor, last_pos: torch.Tensor, layers: list) -> None:
    """Write a prefill's state into ``entry``: the mask of its ``n`` rows (left-padded to ``prompt_len``), each row's
    last position, and its keys and values into the static slots 0 … prompt_len-1 (``update()`` appends at the reset
    length 0). A padding row of the bucket has one open slot, the last prompt slot: it attends to that slot only
    (zeros, or its own pad token), so nothing in it is undefined, and nothing reads it. Every slot after the prompt
    is open from the start: the causal mask (query slot vs key slot) hides the ones not yet written, so the mask
    never changes during decoding."""
    batch = entry.mask.shape[0]
    full = torch.zeros_like(entry.mask)
    full[:n, :prompt_len] = mask
    full[n:, prompt_len - 1] = 1
    full[:, prompt_len:] = 1
    entry.mask.copy_(full)
    entry.pos.zero_()
    entry.pos[:n].copy_(last_pos)
    if len(layers) != len(entry.cache.layers):
        raise PayloadError(FIELD, f"{len(layers)} prefill cache layers for {len(entry.cache.layers)} static ones")
    for static_layer, (keys, values) in zip(entry.cache.layers, layers, strict=True):
        if keys.shape[0] < batch:  # the bucket's padding rows: zeros
            keys = torch.cat([keys, keys.new_zeros((batch - keys.shape[0], *keys.shape[1:]))])
            values = torch.cat([values, values.new_zeros((batch - values.shape[0], *values.shape[1:]))])
        static_layer.update(keys, values)


def _prefill(
    model: Any, tokenizer: Any, prompt_ids: list[list[int]], names: list[str] | None, entry: _Entry
) -> torch.Tensor:
    """The dynamic loop's prefill into ``entry``; each row's next-token logits. It runs over a dynamic cache (a mask
    of the prompt's length only: through the static cache it would attend over the whole bucket with an explicit
    mask, twice as slow on the CPU), whose keys and values :func:`_fill` copies into the static slots. One pass over
    the prompts and one pad token per padding row of the bucket; or, for a mixed batch (``names``), one pass per
    adapter (:func:`.generate._prefill_by_adapter`), the bucket's padding rows left to :func:`_fill`."""
    from . import generate

    device = entry.mask.device
    if names is None:
        padding = [[tokenizer.pad_token_id]] * (entry.mask.shape[0] - len(prompt_ids))
        cache, logits, mask, last_pos = generate._prefill(model, tokenizer, prompt_ids + padding, device, {})
    else:
        cache, logits, mask, last_pos = generate._prefill_by_adapter(model, tokenizer, prompt_ids, names, device)
    _fill(entry, mask.shape[0], mask.shape[1], mask, last_pos, _kv(cache))
    return logits


def _kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    layers = getattr(cache, "layers", None)
    if layers is None or any(getattr(layer, "keys", None) is None for layer in layers):
        raise PayloadError(FIELD, f"the prefill cache ({type(cache).__name__}) has no per-layer keys and values")
    return [(layer.keys, layer.values) for layer in layers]


def _steps(
    tokenizer: Any,
    cfg: GenerateConfig,
    gen: Any,
    entry: _Entry,
    step: Callable[[], torch.Tensor],
    logits: torch.Tensor,
    limits: list[int] | None,
    n: int,
    ends: frozenset[int],
    cuda_graphs: bool,
) -> list[dict]:
    """The fixed-shape decoding steps after the prefill (``logits``: each row's next-token logits)."""
    device = entry.ids.device
    done = Rows.start(tokenizer, limits if limits is not None else [cfg.max_new_tokens] * n, cfg.stop, ends)
    active = list(range(n))  # real rows still decoding, in batch order: the rows _chunk would sample from
    rows = torch.arange(n, device=device)
    for _ in range(max(done.limits)):
        sel = logits.index_select(0, rows).float()  # a copy: a CUDA-graph output is overwritten by the next step
        chosen = _pick(sel, cfg, gen)
        chosen_lp = torch.log_softmax(sel, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        keep = done.record(active, chosen.tolist(), chosen_lp.tolist())
        if not keep:
            break
        # Finished rows keep stepping on their last token (fixed shape); their outputs are never read.
        entry.ids.index_copy_(0, rows, chosen[:, None])
        entry.pos.add_(1)
        if len(keep) < len(active):
            active = [active[j] for j in keep]
            rows = torch.tensor(active, dtype=torch.long, device=device)
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        logits = step()
    return done.results()
