"""Fine-tune the attached adapter on ``{prompt, answer}`` samples (loss on the answer tokens only).

One call = one fresh AdamW optimizer and one linear warmup/decay schedule over the trainable parameters. All RNGs
are reseeded from ``seed`` at the start of the call, so a task trains identically whether or not another task was
trained before in the same process (after :func:`arc_ttft.lora.reset_adapter`).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .errors import NoTrainableSamplesError, PayloadError
from .model import supports_logits_to_keep
from .tokens import encode_batch

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_seq_len: int = 8192
    max_grad_norm: float | None = 1.0
    seed: int = 0
    progress_every: int = 0  # > 0: report every N steps on stderr (see report_progress)
    max_seconds: float | None = None  # stop after this long (at least one step): a run's time budget


# Progress lines go to stderr, which the bridge forwards line by line; calls stay one request/one reply.
PROGRESS_PREFIX = "@@arc-ttft-progress "


def report_progress(step: int, steps: int, loss: float) -> None:
    print(PROGRESS_PREFIX + json.dumps({"step": step, "steps": steps, "loss": loss}), file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Example:
    ids: list[int]
    n_prompt: int  # the first n_prompt ids are the prompt; the rest (answer + EOS) carry the loss


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy ships with torch
        pass
    torch.manual_seed(seed)


def build_examples(tokenizer: Any, samples: list[dict[str, str]], max_seq_len: int) -> tuple[list[Example], int]:
    """Tokenise ``prompt + answer + EOS``; samples longer than ``max_seq_len`` are skipped (never truncated)."""
    prompts = encode_batch(tokenizer, [s["prompt"] for s in samples])
    answers = encode_batch(tokenizer, [s["answer"] for s in samples])
    eos = tokenizer.eos_token_id
    examples: list[Example] = []
    skipped = 0
    for i, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        if not p:
            raise PayloadError(f"train.samples[{i}].prompt", "tokenises to nothing: the answer needs a prompt")
        ids = p + a + [eos]
        if len(ids) > max_seq_len:
            skipped += 1
        else:
            examples.append(Example(ids=ids, n_prompt=len(p)))
    return examples, skipped


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then linear decay; no step has a zero learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    return (steps - step) / max(1, steps - warmup)


def sample_order(n: int, seed: int) -> Iterator[int]:
    """Endless stream of sample indices: one seeded permutation per epoch."""
    rng = random.Random(seed)
    while True:
        order = list(range(n))
        rng.shuffle(order)
        yield from order


def collate(batch: list[Example], pad_id: int, device: torch.device) -> dict[str, Any]:
    """Left-pad a micro-batch so every answer ends in the last column; then only the last ``K+1`` positions need
    logits (``K`` = longest answer + EOS), which saves the full-vocabulary output layer on the prompt tokens."""
    length = max(len(e.ids) for e in batch)
    k = max(len(e.ids) - e.n_prompt for e in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), k), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        n = len(e.ids)
        n_answer = n - e.n_prompt
        input_ids[row, length - n :] = torch.tensor(e.ids)
        mask[row, length - n :] = 1
        labels[row, k - n_answer :] = torch.tensor(e.ids[e.n_prompt :])
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
        "labels": labels.to(device),
        "keep": k + 1,
    }


def answer_logits(model: Any, b: dict[str, Any], use_keep: bool) -> torch.Tensor:
    """One forward pass over a collated batch; float logits at the positions that predict ``b["labels"]``.

    ``use_keep`` asks the model for the last ``keep`` positions' logits only (much less memory with a large vocabulary).
    """
    extra = {"logits_to_keep": b["keep"]} if use_keep else {}
    out = model(
        input_ids=b["input_ids"],
        attention_mask=b["attention_mask"],
        position_ids=b["position_ids"],
        use_cache=False,
        **extra,
    )
    return out.logits[:, -b["keep"] : -1].float()


def summed_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the labelled (non-``IGNORE``) tokens."""
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )


def train(model: Any, tokenizer: Any, samples: list[dict[str, str]], cfg: TrainConfig) -> dict[str, Any]:
    """Run ``cfg.steps`` optimizer steps of ``batch_size × grad_accum`` samples; return losses and counts.

    Each step's loss is the mean over all answer tokens of its micro-batches (token-weighted, so grad_accum=2 with
    batch_size=1 equals batch_size=2 up to float rounding).
    """
    start = time.perf_counter()
    seed_everything(cfg.seed)
    examples, skipped = build_examples(tokenizer, samples, cfg.max_seq_len)
    if not examples:
        raise NoTrainableSamplesError(
            f"no sample fits max_seq_len {cfg.max_seq_len} ({skipped} skipped of {len(samples)})"
            if samples
            else "samples is empty"
        )
    device = next(p.device for p in model.parameters() if p.requires_grad)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = round(cfg.warmup_ratio * cfg.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, warmup))
    use_keep = supports_logits_to_keep(model)
    pad_id = tokenizer.pad_token_id
    order = sample_order(len(examples), cfg.seed)

    losses: list[float] = []
    tokens = 0
    answer_tokens = 0
    model.train()
    try:
        for _ in range(cfg.steps):
            if cfg.max_seconds is not None and losses and time.perf_counter() - start > cfg.max_seconds:
                break
            micro = [[examples[next(order)] for _ in range(cfg.batch_size)] for _ in range(cfg.grad_accum)]
            n_step = sum(len(e.ids) - e.n_prompt for mb in micro for e in mb)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for mb in micro:
                b = collate(mb, pad_id, device)
                loss = summed_loss(answer_logits(model, b, use_keep), b["labels"])
                (loss / n_step).backward()
                loss_sum += loss.item()
                tokens += int(b["attention_mask"].sum())
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(loss_sum / n_step)
            answer_tokens += n_step
            if cfg.progress_every and (len(losses) % cfg.progress_every == 0 or len(losses) == cfg.steps):
                report_progress(len(losses), cfg.steps, losses[-1])
    finally:
        model.eval()
        optimizer.zero_grad(set_to_none=True)  # free gradient memory between tasks
    return {
        "steps": len(losses),
        "losses": losses,
        "tokens": tokens,
        "answer_tokens": answer_tokens,
        "samples": len(examples),
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
    }
