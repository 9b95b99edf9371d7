"""Fine-tune the attached adapter on ``{prompt, answer}`` samples (loss on the answer tokens only).

One call = one fresh AdamW optimizer and one linear warmup/decay schedule over the trainable parameters. All RNGs
are reseeded from ``seed`` at the start of the call, so a task trains identically whether or not another task was
trained before in the same process (after :func:`arc_ttft.lora.reset_adapter`).

Fast paths (see docs/performance.md): with ``pack`` the samples of a step are packed first-fit into rows (see
:func:`pack_capacity` for their length), with position ids restarting at each sample. With no attention mask,
transformers reads those restarts as sample boundaries (a block-diagonal causal mask under SDPA/eager, varlen
kernels under flash attention), so a packed row computes exactly what its samples would compute one by one, without
padding. On CUDA the optimizer is fused AdamW and a bfloat16 model runs under bfloat16 autocast (the LoRA weights
stay float32).

With ``compile`` the forward pass over packed rows (the decoder body for plain-head models) runs through
``torch.compile`` with dynamic shapes: the first call compiles it (once for one-row passes, once for several), later
steps and later tasks reuse the graphs (the adapter is reset in place, so its parameters stay the same tensors).
The loss and gradients equal the eager ones up to float rounding.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from . import compiling
from .errors import NoTrainableSamplesError, PayloadError, TrainingDivergedError
from .model import native_bf16, supports_logits_to_keep
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
    pack: bool = False  # pack each step's samples into rows (same loss and gradients, no padding)
    pack_len: int | None = None  # tokens per packed row; None: see pack_capacity
    fused_optimizer: bool | None = None  # fused AdamW; None: on CUDA
    autocast: bool | None = None  # bfloat16 autocast; None: on CUDA when the model's weights are bfloat16
    compile: bool = False  # torch.compile the packed forward pass (needs pack; see compiled_forward)


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


# Attention implementations that honour sample boundaries given by restarting position ids (no attention mask).
PACKABLE_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
# ... and those among them whose kernels skip the masked-out blocks (varlen / block-sparse): only there do rows
# longer than the longest sample cost no extra attention.
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")
# Model types whose logits are exactly ``lm_head(model(...).last_hidden_state)`` (no soft-capping or scaling), so
# the output layer can run on the answer positions alone, gathered across rows.
PLAIN_HEAD_MODELS = {"qwen2", "qwen3", "llama", "mistral"}


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def attention_kind(model: Any) -> str | None:
    """The attention implementation transformers runs ``model`` with (``sdpa``, ``eager``, ...)."""
    return getattr(_base(model).config, "_attn_implementation", None)


def can_pack(model: Any) -> bool:
    """Whether packed rows stay separated per sample in ``model``'s attention (see :data:`PACKABLE_ATTENTION`)."""
    return attention_kind(model) in PACKABLE_ATTENTION


def pack_capacity(model: Any, batch: list[Example], cfg: TrainConfig) -> int:
    """Tokens per packed row: ``cfg.pack_len`` when set; else ``max_seq_len`` where the attention kernel skips
    masked blocks, and otherwise the step's longest sample, so that a row never costs more attention than the
    padded batch it replaces (SDPA and eager compute the whole masked square)."""
    if cfg.pack_len is not None:
        return max(cfg.pack_len, *(len(e.ids) for e in batch))
    if attention_kind(model) in VARLEN_ATTENTION:
        return cfg.max_seq_len
    return max(len(e.ids) for e in batch)


def pack_rows(examples: list[Example], capacity: int) -> list[list[Example]]:
    """First-fit decreasing: group ``examples`` into rows of at most ``capacity`` tokens (deterministic)."""
    rows: list[list[Example]] = []
    room: list[int] = []
    for e in sorted(examples, key=lambda e: -len(e.ids)):  # sorted() is stable: ties keep their order
        n = len(e.ids)
        for i, r in enumerate(room):
            if n <= r:
                rows[i].append(e)
                room[i] -= n
                break
        else:
            rows.append([e])
            room.append(capacity - n)
    return rows


def collate_packed(rows: list[list[Example]], pad_id: int, device: torch.device) -> dict[str, Any]:
    """Packed rows as one batch: each row holds its samples back to back with positions restarting at 0 per sample,
    right-padded to the longest row (the padding restarts its positions too, so it is a segment of its own that no
    sample sees). ``row``/``col`` index the positions whose logits predict ``labels`` (each answer token + EOS)."""
    length = max(sum(len(e.ids) for e in r) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), length), dtype=torch.long)
    row_idx: list[int] = []
    col_idx: list[int] = []
    labels: list[int] = []
    tokens = 0
    for i, r in enumerate(rows):
        offset = 0
        for e in r:
            n = len(e.ids)
            input_ids[i, offset : offset + n] = torch.tensor(e.ids)
            position_ids[i, offset : offset + n] = torch.arange(n)
            row_idx.extend([i] * (n - e.n_prompt))
            col_idx.extend(range(offset + e.n_prompt - 1, offset + n - 1))
            labels.extend(e.ids[e.n_prompt :])
            offset += n
        tokens += offset
        position_ids[i, offset:] = torch.arange(length - offset)
    return {
        "input_ids": input_ids.to(device),
        "position_ids": position_ids.to(device),
        "row": torch.tensor(row_idx, dtype=torch.long, device=device),
        "col": torch.tensor(col_idx, dtype=torch.long, device=device),
        "labels": torch.tensor(labels, dtype=torch.long, device=device),
        "tokens": tokens,
    }


_OWNER = "train"  # this module's key in the model's store of compiled things (compiling.kept)


def compiled_forward(model: Any, module: Any) -> Any:
    """``module(**inputs)`` through ``torch.compile``, compiled once per ``(model, module)`` and kept on ``model``.

    Shapes are dynamic (the row length changes every step): one graph serves every length, and a second one
    several-row passes (a batch of 1 is specialised). The callable has a code object of its own, so its graphs
    and its recompile budget are not shared with any other model; :func:`.compiling.release` drops them."""
    store = compiling.kept(model).setdefault(_OWNER, {})
    fn = store.get(id(module))
    if fn is None:

        def forward(**inputs: Any) -> Any:
            return module(**inputs)

        compiling.allow_recompiles()
        fn = store[id(module)] = compiling.compiled(forward, "compiled training (compile)", dynamic=None)
    return fn


def _mark_dynamic(*tensors: torch.Tensor) -> None:
    # Without this the first call compiles for its exact shapes, and the second step recompiles.
    for t in tensors:
        for dim in range(t.dim()):
            torch._dynamo.maybe_mark_dynamic(t, dim)


def packed_answer_logits(model: Any, b: dict[str, Any], use_keep: bool, compile: bool = False) -> torch.Tensor:
    """Forward pass over packed rows with no attention mask (the position ids mark the samples); float logits at
    the answer positions, one row per label.

    For plain-head models the output layer runs on the gathered answer positions only. Otherwise the model is asked
    for the logits of every column any row needs (``logits_to_keep`` as an index), or all of them. ``compile`` runs
    the forward pass (the decoder body, or the whole model) through :func:`compiled_forward`; the gather, the
    output layer of plain-head models and the loss stay eager (their shapes depend on the answers)."""
    base = _base(model)
    head = base.get_output_embeddings() if base.config.model_type in PLAIN_HEAD_MODELS else None
    inputs: dict[str, Any] = {"input_ids": b["input_ids"], "position_ids": b["position_ids"], "use_cache": False}
    if compile:
        _mark_dynamic(b["input_ids"], b["position_ids"])
    if head is not None and hasattr(base, "model"):
        body = compiled_forward(model, base.model) if compile else base.model
        hidden = body(**inputs)
        return head(hidden.last_hidden_state[b["row"], b["col"]]).float()
    forward = compiled_forward(model, model) if compile else model
    if use_keep:
        cols, inverse = torch.unique(b["col"], return_inverse=True)
        if compile:
            _mark_dynamic(cols)
        out = forward(**inputs, logits_to_keep=cols)
        return out.logits[b["row"], inverse].float()
    out = forward(**inputs)
    return out.logits[b["row"], b["col"]].float()


def step_loss(
    model: Any,
    batch: list[Example],
    *,
    pack: bool,
    capacity: int,
    pad_id: int,
    device: torch.device,
    use_keep: bool,
    micro_size: int,
    scale: float,
    autocast: bool = False,
    compile: bool = False,
) -> tuple[float, int, int]:
    """Forward and backward over one step's samples, the gradient of ``summed loss × scale`` accumulating in the
    parameters. Unpacked: left-padded micro-batches of ``micro_size`` samples. Packed: rows of ≤ ``capacity``
    tokens, ``micro_size`` rows per forward pass (``compile``: through :func:`compiled_forward`). Returns (summed
    loss, tokens fed without padding, rows)."""
    ctx = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    loss_sum = 0.0
    tokens = 0
    if pack:
        rows = pack_rows(batch, capacity)
        for i in range(0, len(rows), micro_size):
            b = collate_packed(rows[i : i + micro_size], pad_id, device)
            with ctx:
                logits = packed_answer_logits(model, b, use_keep, compile)
            loss = summed_loss(logits, b["labels"])
            (loss * scale).backward()
            loss_sum += loss.item()
            tokens += b["tokens"]
        return loss_sum, tokens, len(rows)
    micros = [batch[i : i + micro_size] for i in range(0, len(batch), micro_size)]
    for mb in micros:
        b = collate(mb, pad_id, device)
        with ctx:
            logits = answer_logits(model, b, use_keep)
        loss = summed_loss(logits, b["labels"])
        (loss * scale).backward()
        loss_sum += loss.item()
        tokens += int(b["attention_mask"].sum())
    return loss_sum, tokens, len(batch)


def make_optimizer(params: list[torch.Tensor], cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; fused (one kernel for all parameters) when ``cfg.fused_optimizer`` says so, by default on CUDA."""
    fused = cfg.fused_optimizer if cfg.fused_optimizer is not None else device.type == "cuda"
    if fused and not all(p.is_floating_point() and p.device.type in ("cuda", "cpu") for p in params):
        fused = False
    # fused=False alone would still pick the multi-tensor (foreach) kernels on CUDA: the naive path is a plain loop.
    kind = {"fused": True} if fused else {"foreach": False}
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kind)


def use_autocast(model: Any, cfg: TrainConfig, device: torch.device) -> bool:
    """bfloat16 autocast: asked for, or by default on CUDA when the base weights are bfloat16 (PEFT keeps the LoRA
    weights in float32, whose matmuls would otherwise run in float32)."""
    if cfg.autocast is not None:
        return cfg.autocast
    if not native_bf16(device):
        return False
    return any(p.dtype == torch.bfloat16 for p in model.parameters())


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
    batch_size=1 equals batch_size=2 up to float rounding). With ``cfg.pack`` the same samples are packed into rows
    instead (``batch_size`` rows per forward pass), which again gives the same loss and gradients up to float
    rounding; ``packed`` in the result says whether packing ran (it needs an attention that honours the position
    ids, see :func:`can_pack`), ``rows`` how many sequences all steps fed (packed rows, or samples), ``compiled``
    whether the forward passes ran compiled (``cfg.compile``, and packing ran), ``compile_seconds`` what the
    steps that compiled a graph took beyond a plain step (the median of the others; all of it when none ran).
    ``seconds`` is the whole call, ``step_seconds`` the steps alone (without tokenising the samples).
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
    optimizer = make_optimizer(params, cfg, device)
    warmup = round(cfg.warmup_ratio * cfg.steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, warmup))
    use_keep = supports_logits_to_keep(model)
    pack = cfg.pack and can_pack(model)
    compile = pack and cfg.compile  # the compiled forward is the packed one (no attention mask, dynamic shapes)
    autocast = use_autocast(model, cfg, device)
    pad_id = tokenizer.pad_token_id
    order = sample_order(len(examples), cfg.seed)
    per_step = cfg.batch_size * cfg.grad_accum

    losses: list[float] = []
    tokens = 0
    answer_tokens = 0
    rows = 0
    compiling_steps: list[float] = []  # seconds of the steps that compiled a graph, and of the others
    plain_steps: list[float] = []
    steps_start = time.perf_counter()  # after tokenising and setting up: "step_seconds" is the steps alone
    model.train()
    try:
        for _ in range(cfg.steps):
            if cfg.max_seconds is not None and losses and time.perf_counter() - start > cfg.max_seconds:
                break
            batch = [examples[next(order)] for _ in range(per_step)]
            n_step = sum(len(e.ids) - e.n_prompt for e in batch)
            optimizer.zero_grad(set_to_none=True)
            step_start, graphs = time.perf_counter(), compiling.graphs_compiled() if compile else 0
            loss_sum, n_tokens, n_rows = step_loss(
                model,
                batch,
                pack=pack,
                capacity=pack_capacity(model, batch, cfg) if pack else cfg.max_seq_len,
                pad_id=pad_id,
                device=device,
                use_keep=use_keep,
                micro_size=cfg.batch_size,
                scale=1.0 / n_step,
                autocast=autocast,
                compile=compile,
            )
            if compile:
                seconds = time.perf_counter() - step_start
                (compiling_steps if compiling.graphs_compiled() != graphs else plain_steps).append(seconds)
            tokens += n_tokens
            rows += n_rows
            if not math.isfinite(loss_sum):
                # Later steps would only spread NaN, and the adapter would answer garbage; say so now.
                raise TrainingDivergedError(
                    f"the loss is not finite at step {len(losses) + 1} of {cfg.steps} (lr {cfg.lr:g}): "
                    "the weights blew up; lower the learning rate"
                )
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
    # What compiling cost beyond a plain step (all of it when no plain step ran): a time budget that sizes later
    # tasks from the seconds per step must not count it.
    plain = statistics.median(plain_steps) if plain_steps else 0.0
    compile_seconds = sum((max(0.0, s - plain) for s in compiling_steps), 0.0)
    return {
        "steps": len(losses),
        "losses": losses,
        "tokens": tokens,
        "answer_tokens": answer_tokens,
        "samples": len(examples),
        "skipped": skipped,
        "seconds": time.perf_counter() - start,
        "step_seconds": time.perf_counter() - steps_start,
        "packed": pack,
        "rows": rows,
        "fused_optimizer": any(g.get("fused") for g in optimizer.param_groups),
        "autocast": autocast,
        "compiled": compile,
        "compile_seconds": compile_seconds,
    }
