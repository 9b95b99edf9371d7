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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import PayloadError
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
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


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


def _select_rows(past: Any, idx: torch.Tensor) -> None:
    """Keep only the batch rows ``idx`` of a KV cache, in place."""
    if hasattr(past, "batch_select_indices"):
        past.batch_select_indices(idx)
    else:  # older caches: beam reordering with fewer indices selects rows the same way
        past.reorder_cache(idx)


def _chunk(model: Any, tokenizer: Any, prompt_ids: list[list[int]], cfg: GenerateConfig, gen: Any) -> list[dict]:
    device = next(model.parameters()).device
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    n, length = len(prompt_ids), max(len(p) for p in prompt_ids)
    input_ids = torch.full((n, length), pad, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for row, ids in enumerate(prompt_ids):
        input_ids[row, length - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, length - len(ids) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    # Positions count real tokens only, so a left-padded row sees the same positions as when run alone.
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if supports_logits_to_keep(model) else {}
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True, **extra)
    past, logits = out.past_key_values, out.logits[:, -1, :]
    last_pos = position_ids[:, -1:]

    new_ids: list[list[int]] = [[] for _ in range(n)]
    logprobs: list[list[float]] = [[] for _ in range(n)]
    reason: list[str | None] = [None] * n
    window = max((len(s) for s in cfg.stop), default=0) + 4
    active = list(range(n))  # the rows still decoding, in batch order; finished rows leave the batch
    for step in range(cfg.max_new_tokens):
        logits = logits.float()
        chosen = _pick(logits, cfg, gen)
        chosen_lp = torch.log_softmax(logits, dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
        for row, tok, lp in zip(active, chosen.tolist(), chosen_lp.tolist(), strict=True):
            new_ids[row].append(tok)
            logprobs[row].append(lp)
            if tok == eos:
                reason[row] = "eos"
            elif cfg.stop:
                tail = tokenizer.decode(new_ids[row][-window:], skip_special_tokens=True)
                if any(s in tail for s in cfg.stop):
                    reason[row] = "stop"
        keep = [j for j, row in enumerate(active) if reason[row] is None]
        if not keep or step == cfg.max_new_tokens - 1:
            break
        if len(keep) < len(active):
            # A finished grid costs nothing more: its row leaves the batch and the KV cache.
            idx = torch.tensor(keep, dtype=torch.long, device=device)
            _select_rows(past, idx)
            chosen, mask, last_pos = chosen[idx], mask[idx], last_pos[idx]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype, device=device)], dim=-1)
        last_pos = last_pos + 1
        out = model(
            input_ids=chosen[:, None],
            attention_mask=mask,
            position_ids=last_pos,
            past_key_values=past,
            use_cache=True,
        )
        past, logits = out.past_key_values, out.logits[:, -1, :]

    results = []
    for row in range(n):
        ids = new_ids[row]
        text_ids = ids[:-1] if reason[row] == "eos" else ids
        text = tokenizer.decode(text_ids, skip_special_tokens=True)
        if reason[row] == "stop":
            cut = min(text.find(s) for s in cfg.stop if s in text)
            text = text[:cut]
        lps = logprobs[row]
        results.append(
            {
                "text": text,
                "n_tokens": len(ids),
                "mean_logprob": sum(lps) / len(lps) if lps else 0.0,
                "finish_reason": reason[row] or "length",
            }
        )
    return results


def generate(model: Any, tokenizer: Any, prompts: list[str], cfg: GenerateConfig) -> dict[str, Any]:
    """Complete every prompt; outputs come back in prompt order.

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
    outputs: list[dict[str, Any] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    try:
        with merged_adapter(model) if cfg.merge else contextlib.nullcontext(), torch.inference_mode():
            for s in range(0, len(order), size):
                idx = order[s : s + size]
                for i, res in zip(idx, _chunk(model, tokenizer, [ids[i] for i in idx], cfg, gen), strict=True):
                    outputs[i] = res
    finally:
        model.train(was_training)
    return {
        "outputs": outputs,
        "tokens": sum(o["n_tokens"] for o in outputs if o is not None),
        "seconds": time.perf_counter() - start,
    }
