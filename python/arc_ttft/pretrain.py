"""Pretrain the embedded model: a small Qwen2 trained from scratch, all parameters, on a ``{prompt, answer}`` corpus.

The corpus is the JSONL that ``scripts/pretrain-data.ts`` writes (ARC-AGI-1 *training* tasks as leave-one-out samples
under the data layer's augmentations, plus generated copy/recolour/geometry curriculum tasks). The model uses the
one-token-per-character tokenizer of :mod:`arc_ttft.tiny`, so every grid cell is one token; the result is a normal
Hugging Face folder (safetensors, config, tokenizer, generation config) that the engine loads with
``from_pretrained`` like any model, plus ``training.json`` with everything needed to reproduce the run.

Training reuses the engine's own pieces: the model is made by :func:`arc_ttft.tiny.make_tiny_model`, samples are
tokenised as :func:`arc_ttft.train.build_examples` does, and with ``--loss answer`` micro-batches come from
:func:`arc_ttft.train.collate` (loss on the answer only, as test-time fine-tuning trains). The default
``--loss outputs`` also puts the loss on every context output grid of the prompt (the corpus lists their spans):
same compute, ~3.6× more supervised tokens. Held-out greedy exact match is read off a teacher-forced pass.

Batches are drawn from length buckets (samples of similar length together, so little compute is spent on padding)
and split into micro-batches of at most ``--micro-tokens`` padded tokens; every step is one optimizer step over
``--batch`` samples. For the first ``--curriculum-steps`` steps batches come mostly from the curriculum pool (copy
skills first), then from it with probability ``--curriculum-share``. A few ARC tasks (``--holdout-tasks``, chosen by
id from the seed) and curriculum tasks are held out of training and used for evaluation.

Run from ``python/`` (or with it on ``PYTHONPATH``)::

    python -m arc_ttft.pretrain --data corpus.jsonl --out ../models/embedded --steps 0 --max-minutes 110

``--steps 0`` picks the number of steps that fits ``--max-minutes``. The same command uses a GPU when one is visible
(``--device auto``; bfloat16 autocast, float32 weights). On CPU a run is bit-reproducible for the same corpus and
thread count: ``training.json`` holds the ``command`` that repeats it. See docs/pretraining.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from .model import native_bf16, quiet_progress, resolve_device, supports_logits_to_keep
from .tiny import make_tiny_model
from .tokens import count_tokens, encode_batch
from .train import IGNORE, Example, answer_logits, build_examples, collate, seed_everything, summed_loss

ARC_KIND = "arc"
# With --steps 0 the step count is fixed after this many warmup steps have been timed (at most AUTO_PROBE_MAX):
# until then nothing depends on it (warmup and curriculum ramp are in absolute steps), so rerunning with the
# recorded --steps reproduces the run exactly.
AUTO_PROBE_MIN, AUTO_PROBE_MAX = 10, 50


@dataclass(frozen=True)
class PretrainConfig:
    data: str
    out: str
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int | None = None
    intermediate: int | None = None  # None: 4 × hidden
    max_len: int = 2048  # longest sample (tokens, EOS included); also the model's max_position_embeddings
    init_std: float = 0.02
    steps: int = 0  # length of the LR schedule; 0 = as many as fit --max-minutes (decided during warmup)
    stop_step: int | None = None  # stop after this many steps without changing the schedule (reproduces a cut run)
    batch: int = 16  # samples per optimizer step
    micro_tokens: int = 8192  # most padded tokens per micro-batch (bounds memory; long samples go a few at a time)
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr × this
    warmup: int = 100
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    loss: str = "outputs"  # "answer": the answer only (as TTFT trains); "outputs": every output grid of the prompt too
    curriculum_share: float = 0.2  # share of curriculum batches after the ramp
    curriculum_steps: int = 400  # steps over which the curriculum share falls linearly from 1 to curriculum_share
    holdout_tasks: int = 16  # ARC task ids held out of training, for evaluation
    holdout_curriculum: int = 96  # curriculum tasks held out of training, for evaluation
    eval_per_task: int = 4  # held-out samples evaluated per ARC task (the first ones: identity augmentation)
    eval_train: int = 64  # training samples also evaluated (memorisation vs generalisation)
    eval_every: int = 1000  # steps between evaluations (0 = only at the end)
    log_every: int = 25
    seed: int = 0
    max_minutes: float = 0.0  # wall-clock budget of the whole run (0 = none); training stops in time to evaluate/save
    device: str = "auto"
    threads: int | None = None
    save_dtype: str = "float32"  # bfloat16 halves the folder (the engine upcasts to float32 on CPU)
    overwrite: bool = False


def parse_args(argv: list[str] | None = None) -> PretrainConfig:
    defaults = PretrainConfig(data="", out="")
    p = argparse.ArgumentParser(prog="python -m arc_ttft.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="corpus JSONL from scripts/pretrain-data.ts")
    p.add_argument("--out", required=True, help="output model folder")
    for name, typ, help_ in [
        ("hidden", int, "hidden size"),
        ("layers", int, "decoder layers"),
        ("heads", int, "attention heads"),
        ("kv-heads", int, "key/value heads (default: heads)"),
        ("intermediate", int, "MLP size (default: 4 × hidden)"),
        ("max-len", int, "longest sample in tokens; also max_position_embeddings"),
        ("init-std", float, "initializer_range of the random init"),
        ("steps", int, "optimizer steps, the schedule's length (0 = as many as fit --max-minutes)"),
        ("stop-step", int, "stop after this many steps, schedule unchanged"),
        ("batch", int, "samples per step"),
        ("micro-tokens", int, "most padded tokens per micro-batch"),
        ("lr", float, "peak learning rate"),
        ("min-lr-ratio", float, "final lr as a fraction of the peak"),
        ("warmup", int, "linear warmup steps"),
        ("weight-decay", float, "AdamW weight decay (matrices only)"),
        ("max-grad-norm", float, "gradient clipping (0 = off)"),
        ("curriculum-share", float, "share of curriculum batches after the ramp"),
        ("curriculum-steps", int, "steps over which the curriculum share falls from 1"),
        ("holdout-tasks", int, "ARC tasks held out for evaluation"),
        ("holdout-curriculum", int, "curriculum tasks held out for evaluation"),
        ("eval-per-task", int, "held-out samples per ARC task"),
        ("eval-train", int, "training samples evaluated too"),
        ("eval-every", int, "steps between evaluations (0 = end only)"),
        ("log-every", int, "steps between log lines"),
        ("seed", int, "seed of init, data order and hold-out choice"),
        ("max-minutes", float, "wall-clock budget of the run (0 = none)"),
        ("threads", int, "torch CPU threads"),
    ]:
        dest = name.replace("-", "_")
        p.add_argument(f"--{name}", type=typ, default=getattr(defaults, dest), help=f"{help_} (default %(default)s)")
    p.add_argument(
        "--loss",
        choices=("outputs", "answer"),
        default=defaults.loss,
        help="loss on the answer only, or on every output grid of the prompt too (default %(default)s)",
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default %(default)s)")
    p.add_argument(
        "--save-dtype",
        choices=("float32", "bfloat16"),
        default=defaults.save_dtype,
        help="dtype of the saved weights (default %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into an existing model folder")
    a = p.parse_args(argv)
    cfg = PretrainConfig(**vars(a))
    problems = [
        (cfg.hidden % cfg.heads != 0, f"--heads {cfg.heads} must divide --hidden {cfg.hidden}"),
        (cfg.kv_heads is not None and cfg.heads % cfg.kv_heads != 0, "--kv-heads must divide --heads"),
        (min(cfg.hidden, cfg.layers, cfg.heads, cfg.batch, cfg.max_len) < 1, "sizes must be positive"),
        (cfg.steps < 0 or cfg.warmup < 0 or cfg.curriculum_steps < 0, "--steps, --warmup, --curriculum-steps are >= 0"),
        (cfg.steps == 0 and cfg.max_minutes <= 0, "--steps 0 (fit the time budget) needs --max-minutes"),
        (cfg.steps == 0 and cfg.warmup < AUTO_PROBE_MIN, f"--steps 0 needs --warmup >= {AUTO_PROBE_MIN}"),
        (cfg.micro_tokens < cfg.max_len, f"--micro-tokens must be at least --max-len ({cfg.max_len})"),
        (not 0.0 <= cfg.curriculum_share <= 1.0, "--curriculum-share must be in [0, 1]"),
        (cfg.log_every < 1, "--log-every must be positive"),
    ]
    for bad, message in problems:
        if bad:
            p.error(message)
    return cfg


def reproduce_command(cfg: PretrainConfig, steps_done: int | None = None) -> str:
    """The command line that repeats this run, every setting spelled out: the schedule's resolved ``--steps``, no
    time budget (it only guards the wall clock), and ``--stop-step`` when the run stopped before its schedule ended
    (time budget or Ctrl-C). Rerun on CPU with the same thread count, it gives bit-identical weights."""
    parts = ["python -m arc_ttft.pretrain"]
    settings = asdict(cfg)
    settings.update(max_minutes=0.0, overwrite=False)
    if steps_done is not None and steps_done < cfg.steps:
        settings["stop_step"] = steps_done
    for key, value in settings.items():
        if value is None or value is False or (key == "max_minutes" and not value):
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------- data


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_corpus(path: str) -> list[dict[str, Any]]:
    """Read the JSONL corpus: ``prompt`` and ``answer`` (strings) per line; ``task``, ``kind`` and ``outputs``
    (``[start, end)`` character offsets of the context output grids in the prompt) optional."""
    lines: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from e
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) or not row["prompt"]:
                raise ValueError(f"{path}:{n}: expected an object with a non-empty string 'prompt'")
            if not isinstance(row.get("answer"), str) or not row["answer"]:
                raise ValueError(f"{path}:{n}: expected a non-empty string 'answer'")
            outputs = row.get("outputs", [])
            if not isinstance(outputs, list) or not all(
                isinstance(x, list) and len(x) == 2 and all(isinstance(v, int) for v in x) and 0 <= x[0] < x[1]
                for x in outputs
            ):
                raise ValueError(f"{path}:{n}: 'outputs' must be a list of [start, end) character offsets")
            if any(end > len(row["prompt"]) for _, end in outputs):
                raise ValueError(f"{path}:{n}: an 'outputs' span ends after the prompt")
            lines.append(
                {
                    "prompt": row["prompt"],
                    "answer": row["answer"],
                    "task": str(row.get("task", f"line-{n}")),
                    "kind": str(row.get("kind", ARC_KIND)),
                    "outputs": [tuple(x) for x in outputs],
                }
            )
    if not lines:
        raise ValueError(f"{path}: the corpus is empty")
    return lines


@dataclass
class Split:
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]  # the evaluation samples of the held-out tasks
    heldout_tasks: list[str]
    train_probe: list[dict[str, Any]]  # training samples evaluated too


def split_corpus(lines: list[dict[str, Any]], cfg: PretrainConfig) -> Split:
    """Hold out whole tasks (chosen by id from the seed): none of their samples is trained on."""
    rng = random.Random(f"holdout:{cfg.seed}")
    arc_ids = sorted({x["task"] for x in lines if x["kind"] == ARC_KIND})
    gen_ids = sorted({x["task"] for x in lines if x["kind"] != ARC_KIND})
    # Keep most tasks for training even on a small corpus.
    held_arc = rng.sample(arc_ids, min(cfg.holdout_tasks, len(arc_ids) // 4))
    held_gen = rng.sample(gen_ids, min(cfg.holdout_curriculum, len(gen_ids) // 4))
    held = set(held_arc) | set(held_gen)
    train = [x for x in lines if x["task"] not in held]
    per_task: dict[str, int] = {}
    heldout = []
    for x in lines:
        if x["task"] in held and per_task.get(x["task"], 0) < cfg.eval_per_task:
            per_task[x["task"]] = per_task.get(x["task"], 0) + 1
            heldout.append(x)
    probe = random.Random(f"probe:{cfg.seed}").sample(train, min(cfg.eval_train, len(train)))
    return Split(train, heldout, sorted(held), probe)


class BucketStream:
    """Endless stream of batches of example indices: each epoch is a seeded shuffle cut into chunks of
    ``batch × 32`` samples, each chunk sorted by length and cut into batches, the batches shuffled again."""

    def __init__(self, lengths: list[int], indices: list[int], batch: int, seed: int) -> None:
        self.lengths, self.indices, self.batch = lengths, indices, batch
        self.rng = random.Random(seed)

    def __iter__(self) -> Iterator[list[int]]:
        while True:
            order = self.indices[:]
            self.rng.shuffle(order)
            chunk = self.batch * 32
            batches: list[list[int]] = []
            for s in range(0, len(order), chunk):
                part = sorted(order[s : s + chunk], key=lambda i: self.lengths[i])
                batches += [part[b : b + self.batch] for b in range(0, len(part), self.batch)]
            self.rng.shuffle(batches)
            # A short last batch would give one step little signal: pad it from the start of the epoch.
            yield from (b if len(b) == self.batch else (b + order)[: self.batch] for b in batches)


@dataclass(frozen=True)
class SpanExample:
    """A sample whose loss covers several token spans: the context output grids and the answer (+ EOS)."""

    ids: list[int]
    n_prompt: int
    spans: tuple[tuple[int, int], ...]  # [start, end) token positions that carry the loss, answer + EOS last

    @property
    def n_loss(self) -> int:
        return sum(e - s for s, e in self.spans)


def build_span_examples(tokenizer: Any, samples: list[dict[str, Any]], max_len: int) -> tuple[list[SpanExample], int]:
    """Like :func:`arc_ttft.train.build_examples`, plus the context outputs' spans. Character offsets are token
    offsets because the char tokenizer gives one token per (ASCII) character; anything else is an error."""
    prompts = encode_batch(tokenizer, [s["prompt"] for s in samples])
    answers = encode_batch(tokenizer, [s["answer"] for s in samples])
    out: list[SpanExample] = []
    skipped = 0
    for s, p, a in zip(samples, prompts, answers, strict=True):
        if s["outputs"] and len(p) != len(s["prompt"]):
            raise ValueError("--loss outputs needs a one-token-per-character tokenizer (char offsets = token offsets)")
        ids = p + a + [tokenizer.eos_token_id]
        if len(ids) > max_len:
            skipped += 1
            continue
        spans = (*(tuple(x) for x in s["outputs"]), (len(p), len(ids)))
        out.append(SpanExample(ids=ids, n_prompt=len(p), spans=spans))
    return out, skipped


def collate_spans(batch: list[SpanExample], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded micro-batch with full-length labels: the token at each span position is a target."""
    length = max(len(e.ids) for e in batch)
    input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), length), dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE, dtype=torch.long)
    for row, e in enumerate(batch):
        off = length - len(e.ids)
        ids = torch.tensor(e.ids)
        input_ids[row, off:] = ids
        mask[row, off:] = 1
        for start, end in e.spans:
            labels[row, off + start : off + end] = ids[start:end]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": position_ids.to(device),
        "labels": labels.to(device),
    }


def n_loss_tokens(e: Example | SpanExample) -> int:
    return e.n_loss if isinstance(e, SpanExample) else len(e.ids) - e.n_prompt


def micro_batches(batch: list[Any], max_tokens: int) -> list[list[Any]]:
    """Split a step's samples (shortest first) into micro-batches of at most ``max_tokens`` padded tokens."""
    order = sorted(range(len(batch)), key=lambda i: len(batch[i].ids))
    return [[batch[i] for i in run] for run in micro_batches_idx(order, batch, max_tokens)]


def micro_batches_idx(order: list[int], examples: list[Any], max_tokens: int) -> list[list[int]]:
    """Cut ``order`` (indices, shortest first) into runs of at most ``max_tokens`` padded tokens."""
    out: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * len(examples[i].ids) > max_tokens:
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup, then cosine decay to ``lr × min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def curriculum_probability(step: int, cfg: PretrainConfig) -> float:
    """Chance that a step's batch comes from the curriculum pool: 1 at the start, falling linearly to the share."""
    if step >= cfg.curriculum_steps:
        return cfg.curriculum_share
    return 1.0 - (1.0 - cfg.curriculum_share) * step / cfg.curriculum_steps


# --------------------------------------------------------------------------------------------------- model


def build_model(cfg: PretrainConfig) -> tuple[Any, Any]:
    """A fresh random Qwen2 with the char tokenizer, made by :func:`arc_ttft.tiny.make_tiny_model` and loaded back
    through ``from_pretrained``, so the model is built exactly like the engine's stand-in and loads like any model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="arc-ttft-pretrain-") as tmp:
        make_tiny_model(
            tmp,
            hidden_size=cfg.hidden,
            num_layers=cfg.layers,
            num_heads=cfg.heads,
            num_kv_heads=cfg.kv_heads,
            intermediate_size=cfg.intermediate,
            max_position_embeddings=cfg.max_len,
            initializer_range=cfg.init_std,
            seed=cfg.seed,
        )
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    tokenizer.padding_side = "left"
    return model, tokenizer


def use_autocast(device: torch.device) -> bool:
    """bfloat16 autocast on a GPU that supports it (weights stay float32); plain float32 on CPU."""
    return native_bf16(device)


def make_optimizer(model: Any, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on norms, biases)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def forward_loss(model: Any, batch: list[Any], pad_id: int, device: torch.device, autocast: bool) -> torch.Tensor:
    """Summed cross-entropy over the loss tokens of one micro-batch: the engine's collate and loss for answer-only
    examples, full-length labels for span examples."""
    if isinstance(batch[0], SpanExample):
        b = collate_spans(batch, pad_id, device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(
                input_ids=b["input_ids"],
                attention_mask=b["attention_mask"],
                position_ids=b["position_ids"],
                use_cache=False,
            )
        return summed_loss(out.logits[:, :-1].float(), b["labels"][:, 1:])
    b = collate(batch, pad_id, device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = answer_logits(model, b, supports_logits_to_keep(model))
    return summed_loss(logits, b["labels"])


def evaluate(
    model: Any, tokenizer: Any, samples: list[dict[str, Any]], cfg: PretrainConfig, device: torch.device
) -> dict[str, Any]:
    """Greedy exact match, token accuracy and loss on the answers, overall and per kind.

    Exact match is read off one teacher-forced pass: greedy decoding reproduces the answer exactly when, at every
    answer position, the most likely next token is the answer's token (EOS excluded: the engine stops at the grid
    terminator). That equals generating greedily and comparing, without the cost of decoding."""
    n_prompt = count_tokens(tokenizer, [s["prompt"] for s in samples])
    n_answer = count_tokens(tokenizer, [s["answer"] for s in samples])
    kept = [s for s, p, a in zip(samples, n_prompt, n_answer, strict=True) if p + a + 1 <= cfg.max_len]
    examples, _ = build_examples(tokenizer, kept, cfg.max_len)
    if not examples:
        return {"n": 0}
    was_training = model.training
    model.eval()
    right: list[bool] = []
    loss_sum, n_tok, n_correct = 0.0, 0, 0
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    with torch.inference_mode():
        for mb_idx in micro_batches_idx(order, examples, cfg.micro_tokens):
            b = collate([examples[i] for i in mb_idx], tokenizer.pad_token_id, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_autocast(device)):
                logits = answer_logits(model, b, supports_logits_to_keep(model))
            labels = b["labels"]
            loss_sum += summed_loss(logits, labels).item()
            n_tok += int((labels != IGNORE).sum())
            # Answers are right-aligned by collate, so the last label column is every row's EOS.
            hit = (logits.argmax(-1) == labels)[:, :-1]
            scored = (labels != IGNORE)[:, :-1]
            n_correct += int((hit & scored).sum())
            right += ((hit | ~scored).all(-1)).tolist()
    model.train(was_training)
    by_index = dict(zip(order, right, strict=True))
    by_kind: dict[str, list[bool]] = {}
    for i, sample in enumerate(kept):
        by_kind.setdefault(sample["kind"], []).append(by_index[i])
    n_cells = sum(len(e.ids) - e.n_prompt - 1 for e in examples)
    return {
        "n": len(examples),
        "exact": sum(right) / len(right),
        "token_accuracy": n_correct / max(1, n_cells),
        "loss": loss_sum / max(1, n_tok),
        "by_kind": {k: {"n": len(v), "exact": sum(v) / len(v)} for k, v in sorted(by_kind.items())},
    }


# --------------------------------------------------------------------------------------------------- run


def _log(message: str) -> None:
    print(message, flush=True)


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Train and save; returns the contents of ``training.json``."""
    start = time.perf_counter()
    deadline = start + cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    if os.path.isfile(os.path.join(cfg.out, "config.json")) and not cfg.overwrite:
        raise FileExistsError(f"{cfg.out} already holds a model: pass --overwrite to replace it")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    quiet_progress()
    device = resolve_device(cfg.device)
    autocast = use_autocast(device)
    seed_everything(cfg.seed)

    data_hash = file_sha256(cfg.data)
    lines = load_corpus(cfg.data)
    split = split_corpus(lines, cfg)
    model, tokenizer = build_model(cfg)
    model.to(device)
    model.train()
    t0 = time.perf_counter()
    # Tokenise each pool apart (build_examples skips over-long samples), so every example's pool is known.
    pools = {
        "arc": [x for x in split.train if x["kind"] == ARC_KIND],
        "curriculum": [x for x in split.train if x["kind"] != ARC_KIND],
    }
    examples: list[Any] = []
    pool_indices: dict[str, list[int]] = {}
    skipped = 0
    for name, samples in pools.items():
        build = build_span_examples if cfg.loss == "outputs" else build_examples
        built, n_skipped = build(tokenizer, samples, cfg.max_len) if samples else ([], 0)
        pool_indices[name] = list(range(len(examples), len(examples) + len(built)))
        examples += built
        skipped += n_skipped
    _log(
        f"corpus {cfg.data}: {len(lines)} samples, {len(split.train)} for training ({skipped} longer than "
        f"{cfg.max_len} skipped), {len(split.heldout)} held-out samples of {len(split.heldout_tasks)} tasks; "
        f"tokenised in {time.perf_counter() - t0:.1f}s"
    )
    if not examples:
        raise ValueError(f"no training sample fits --max-len {cfg.max_len}")
    lengths = [len(e.ids) for e in examples]
    streams = {
        name: iter(BucketStream(lengths, idx, cfg.batch, cfg.seed * 1000 + j))
        for j, (name, idx) in enumerate(pool_indices.items())
        if idx
    }
    pick = random.Random(f"pools:{cfg.seed}")
    n_params = sum(p.numel() for p in model.parameters())
    _log(
        f"model: Qwen2 hidden {cfg.hidden}, {cfg.layers} layers, {cfg.heads} heads, {n_params:,} parameters; "
        f"device {device}{' (bf16 autocast)' if autocast else ''}, {torch.get_num_threads()} CPU threads"
    )

    optimizer = make_optimizer(model, cfg)
    pad_id = tokenizer.pad_token_id
    history: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    window: list[float] = []
    tokens = loss_tokens = 0
    padded_tokens = 0
    step = 0
    stop_reason = "steps"
    train_seconds = 0.0
    eval_seconds = 0.0
    # Reserve for the final evaluation and save: a guess (a small share of the budget) until an eval is timed.
    budget_s = cfg.max_minutes * 60 if cfg.max_minutes > 0 else math.inf
    slack = min(5.0, 0.05 * budget_s)
    last_eval_seconds = min(10.0, 0.05 * budget_s)
    last = (time.perf_counter(), 0)
    auto: dict[str, Any] | None = None
    probe = min(AUTO_PROBE_MAX, cfg.warmup)
    timed_from = (0.0, 0)  # (train_seconds, tokens) once the first steps (slow: allocations) are past
    limit: float = math.inf if cfg.steps == 0 else cfg.steps
    if cfg.stop_step is not None:
        limit = min(limit, cfg.stop_step)
    try:
        while step < limit:
            if cfg.steps == 0 and step == probe:
                cfg, auto = _fit_steps(
                    cfg,
                    step,
                    seconds=train_seconds - timed_from[0],
                    tokens=tokens - timed_from[1],
                    lengths=lengths,
                    pools=pool_indices,
                    remaining=deadline - time.perf_counter(),
                )
                limit = cfg.steps if cfg.stop_step is None else min(cfg.steps, cfg.stop_step)
                _log(f"steps: {cfg.steps} fit the time budget ({auto['seconds_per_token'] * 1e6:.0f} µs/token)")
                continue
            # Stop early enough to run the final evaluation and save within the budget.
            if time.perf_counter() + 1.2 * last_eval_seconds + slack > deadline:
                stop_reason = "time"
                break
            t_step = time.perf_counter()
            curriculum = pick.random() < curriculum_probability(step, cfg)
            pool = "curriculum" if curriculum else "arc"
            if pool not in streams:  # a corpus with one pool only
                pool = next(iter(streams))
            batch = [examples[i] for i in next(streams[pool])]
            n_loss = sum(n_loss_tokens(e) for e in batch)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for mb in micro_batches(batch, cfg.micro_tokens):
                loss = forward_loss(model, mb, pad_id, device, autocast)
                (loss / n_loss).backward()
                loss_sum += loss.item()
                padded_tokens += len(mb) * max(len(e.ids) for e in mb)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            step += 1
            tokens += sum(len(e.ids) for e in batch)
            loss_tokens += n_loss
            window.append(loss_sum / n_loss)
            train_seconds += time.perf_counter() - t_step
            if step == AUTO_PROBE_MIN // 2:
                timed_from = (train_seconds, tokens)
            if step % cfg.log_every == 0 or step == limit:
                now = time.perf_counter()
                entry = {
                    "step": step,
                    "loss": sum(window) / len(window),
                    "lr": lr_at(step - 1, cfg),
                    "tokens": tokens,
                    "tokens_per_s": (tokens - last[1]) / max(1e-9, now - last[0]),
                    "seconds": now - start,
                }
                history.append(entry)
                window = []
                last = (now, tokens)
                _log(
                    f"step {step}/{cfg.steps or '?'} loss {entry['loss']:.4f} lr {entry['lr']:.2e} "
                    f"{entry['tokens_per_s']:,.0f} tok/s {entry['seconds'] / 60:.1f} min"
                )
            if cfg.eval_every and step % cfg.eval_every == 0 and step < limit:
                t_eval = time.perf_counter()
                evals.append(_eval_all(model, tokenizer, split, cfg, device, step=step))
                last_eval_seconds = time.perf_counter() - t_eval
                eval_seconds += last_eval_seconds
                last = (time.perf_counter(), tokens)
    except KeyboardInterrupt:
        stop_reason = "interrupted"
        _log("interrupted: evaluating and saving what was trained")

    if cfg.steps == 0:  # stopped before --steps 0 chose a length: only warmup ran, which any length repeats
        cfg = replace(cfg, steps=max(1, step))
    t_eval = time.perf_counter()
    final = _eval_all(model, tokenizer, split, cfg, device, step=step)
    evals.append(final)
    eval_seconds += time.perf_counter() - t_eval

    model.eval()
    model.to("cpu", dtype=torch.bfloat16 if cfg.save_dtype == "bfloat16" else torch.float32)
    os.makedirs(cfg.out, exist_ok=True)
    model.save_pretrained(cfg.out)
    tokenizer.save_pretrained(cfg.out)
    meta_path = cfg.data + ".meta.json"
    corpus_meta = None
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            corpus_meta = json.load(f)
    import transformers

    record = {
        "format": "arc-ttft-pretrain/1",
        "args": asdict(cfg),
        "command": reproduce_command(cfg, step),
        "seed": cfg.seed,
        "data": {
            "path": os.path.abspath(cfg.data),
            "sha256": data_hash,
            "samples": len(lines),
            "train_samples": len(examples),
            "skipped_too_long": skipped,
            "arc_train_samples": len(pool_indices["arc"]),
            "curriculum_train_samples": len(pool_indices["curriculum"]),
            "heldout_tasks": split.heldout_tasks,
            "corpus_meta": corpus_meta,
        },
        "model": {
            "architecture": "Qwen2ForCausalLM",
            "n_params": n_params,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": cfg.max_len,
            "bytes_safetensors": os.path.getsize(os.path.join(cfg.out, "model.safetensors")),
        },
        "steps": step,
        "stop_reason": stop_reason,
        "auto_steps": auto,
        "tokens": tokens,
        "loss_tokens": loss_tokens,
        "padding_share": 1 - tokens / max(1, padded_tokens),
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "tokens_per_second": tokens / max(1e-9, train_seconds),
        "final_loss": history[-1]["loss"] if history else None,
        "heldout": final["heldout"],
        "train_probe": final["train_probe"],
        "history": history,
        "evals": evals,
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "bf16_autocast": autocast,
        },
    }
    with open(os.path.join(cfg.out, "training.json"), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    with open(os.path.join(cfg.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(model_card(record))
    for name in os.listdir(cfg.out):  # save_pretrained may leave 0600 files; the package ships them
        path = os.path.join(cfg.out, name)
        if os.path.isfile(path):
            os.chmod(path, 0o644)
    _log(
        f"saved {cfg.out}: {step} steps ({stop_reason}) in {record['wall_seconds'] / 60:.1f} min, "
        f"final loss {record['final_loss']}, held-out exact {final['heldout'].get('exact')}"
    )
    return record


def _fit_steps(
    cfg: PretrainConfig,
    step: int,
    *,
    seconds: float,
    tokens: int,
    lengths: list[int],
    pools: dict[str, list[int]],
    remaining: float,
) -> tuple[PretrainConfig, dict[str, Any]]:
    """The schedule length that fits the rest of the time budget, from the measured time per token and the
    expected tokens of each later step (curriculum samples are shorter than ARC ones)."""
    per_token = seconds / max(1, tokens)
    mean = {k: sum(lengths[i] for i in v) / len(v) for k, v in pools.items() if v}
    arc, cur = mean.get("arc", mean.get("curriculum", 1.0)), mean.get("curriculum", mean.get("arc", 1.0))
    # Keep a margin for evaluations, saving and slower stretches of a shared machine.
    budget = 0.9 * remaining - min(30.0, 0.05 * remaining)
    spent, n = 0.0, step
    while True:
        p = curriculum_probability(n, cfg)
        cost = cfg.batch * (p * cur + (1 - p) * arc) * per_token
        if spent + cost > budget:
            break
        spent += cost
        n += 1
    steps = max(n, step + 1)
    info = {"decided_at_step": step, "seconds_per_token": per_token, "expected_train_seconds": spent}
    return replace(cfg, steps=steps), info


def model_card(record: dict[str, Any]) -> str:
    """A short README for the model folder: what it is, how it was made, how well it does."""
    a, m, h = record["args"], record["model"], record["heldout"]
    kinds = ", ".join(f"{k} {v['exact']:.0%} of {v['n']}" for k, v in h.get("by_kind", {}).items())
    return (
        "# arc-ttft embedded model\n\n"
        f"A {m['n_params']:,}-parameter Qwen2 ({a['hidden']} hidden, {a['layers']} layers, {a['heads']} heads) "
        f"with a one-token-per-character vocabulary of {m['vocab_size']} tokens and a context of "
        f"{m['max_position_embeddings']} tokens, trained from scratch by `python -m arc_ttft.pretrain` on ARC-AGI-1 "
        "training tasks (leave-one-out samples under augmentations, compact grid format) and generated "
        "copy/recolour/geometry tasks. No evaluation task was used. arc-ttft loads it for `model: 'embedded'`.\n\n"
        f"- Training: {record['steps']} steps, {record['tokens']:,} tokens, {record['wall_seconds'] / 60:.0f} min on "
        f"{record['environment']['device']} ({record['environment']['threads']} threads), seed {record['seed']}.\n"
        f"- Held-out tasks (greedy exact match): {h.get('exact', 0):.1%} of {h.get('n', 0)} samples ({kinds}); "
        f"answer loss {h.get('loss', float('nan')):.3f}.\n"
        "- Everything needed to reproduce it is in `training.json` (`command` repeats the run); see "
        "docs/pretraining.md in the arc-ttft repository.\n"
    )


def _eval_all(
    model: Any, tokenizer: Any, split: Split, cfg: PretrainConfig, device: torch.device, *, step: int
) -> dict[str, Any]:
    t = time.perf_counter()
    result = {
        "step": step,
        "heldout": evaluate(model, tokenizer, split.heldout, cfg, device),
        "train_probe": evaluate(model, tokenizer, split.train_probe, cfg, device),
    }
    result["seconds"] = time.perf_counter() - t
    h, tp = result["heldout"], result["train_probe"]
    by_kind = ", ".join(f"{k} {v['exact']:.2f}/{v['n']}" for k, v in h.get("by_kind", {}).items())
    _log(
        f"eval @ {step}: held-out exact {h.get('exact', 0):.3f} loss {h.get('loss', float('nan')):.4f} ({by_kind}); "
        f"train-probe exact {tp.get('exact', 0):.3f} loss {tp.get('loss', float('nan')):.4f} "
        f"[{result['seconds']:.0f}s]"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        pretrain(cfg)
    except (FileExistsError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
