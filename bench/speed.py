"""Fast paths vs the naive path, measured in one run: training tokens/s, generation tokens/s (also over a static
KV cache, eager and compiled, and with several tasks in one mixed-adapter batch), per-task overhead, and a projection
of a whole 100-task single-task run (see docs/performance.md).

    python bench/speed.py [--model PATH] [--device cpu] [--threads 1] [--train-batch 8] [--naive-steps 8]
                          [--fast-steps 2] [--gen-tokens 48] [--naive-prompts 2] [--train-task 00dbd492]
                          [--gen-task 00dbd492] [--scale K ...] [--repeats 3] [--tasks 2] [--naive-procs 1]
                          [--static-tokens 48] [--[no-]compile] [--warm-calls 3] [--mixed-k 4]
                          [--mixed-tokens 48] [--[no-]compile-train] [--json] [--out FILE]

Without ``--model`` it builds a tiny random model (the engine's stand-in shape):
a 165k-parameter Qwen2 with the character tokenizer. Everything runs through the engine's
``dispatch`` in a long-lived worker process (bench/gpu/worker.py), on the real ARC texts recorded in
bench/gpu/payloads.json.gz (6 ARC-AGI-1 evaluation tasks: their training samples and their 8-view prompts).

- **Train.** Naive: one sample per step, unpacked, plain AdamW loop, no autocast. Fast: ``--train-batch`` samples
  per step packed into rows (``pack``), fused AdamW and bfloat16 autocast where the device has them (CUDA). Both
  train on the samples of one recorded task (``--train-task``, 1,160 tokens each, a mid-length task), as single-task
  fine-tuning does; tokens/s = tokens fed (no padding) / seconds ``train`` reports.
- **Generate.** Naive: one prompt per call (``batch_size`` 1). Fast: the 8 views of a task in one batch, finished
  rows leaving the batch; once with the adapter as it is and once with ``merge``. Greedy, at most ``--gen-tokens``
  new tokens, the recorded stop string; tokens/s = new tokens / seconds ``generate`` reports (prefill included).
- **Static decode** (``static_decode``). The same 8 views, greedy, ``--static-tokens`` new tokens: the dynamic
  loop vs ``static_cache`` (eager), alternating, medians; then ``compile`` (``compiled``): the first call compiles
  the bucket (``compile_seconds``, its decoding included), the median of ``--warm-calls`` later calls is its
  tokens/s. ``same_outputs``: the texts equal the dynamic loop's.
- **Mixed batch** (``mixed_batch``). The first ``--mixed-k`` recorded tasks, each with an adapter of its own (a
  reset with its own seed + one packed training step on its samples, saved and kept in a slot): their views in one
  ``generate`` (``adapters`` = the slots, per-prompt ``max_new_tokens`` proportional to each task's answer length,
  the longest ``--mixed-tokens``) vs one call per task with its adapter loaded (``merge`` as the generate stage found
  best). Alternating, medians; ``same_outputs``: the mixed batch's texts equal the separate calls'.
- **Mixed batch, fixed shapes** (``mixed_batch.static`` / ``mixed_batch.compiled``). The same mixed batch over the
  static KV cache, each row reading its task's adapter from stacked copies (multi_lora.py), eager and compiled:
  the first call timed apart, then the median of ``--warm-calls`` calls, against the separate calls.
- **Compiled training** (``train_compiled``). The fast path's packed steps with ``compile`` vs without, alternating,
  medians; the first compiled call (``compile_seconds``) compiles. ``max_loss_rel_diff``: the losses' largest
  relative difference between the two.
- **Overhead.** The recorded calls of ``--tasks`` tasks replayed: round trips minus the compute Python reports. The
  naive cost is a fresh process per task (bench/naive_task.py), ``--naive-procs`` times.
- **Projection.** 100 tasks × (300 training samples of the recorded mean length at the measured training tokens/s,
  plus 8 views × the recorded mean answer length at the measured generation tokens/s, plus the overhead), plus the
  engine start, for the naive and for the fast path; the fast path generates on the fastest measured generation
  path (``generate_best``; a compiled path adds its compile seconds once) and trains compiled when that measured
  faster (adding its compile seconds once).

Naive and fast runs alternate ``--repeats`` times and the medians are reported, so both see the same machine load.
The functions here are shared with bench/gpu/bench.py, which runs them on the 0.5B shape.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
PAYLOADS = os.path.join(HERE, "gpu", "payloads.json.gz")

Call = Callable[[str, Any], tuple[dict[str, Any], float]]

# The naive path switches every fast path off explicitly, so it stays naive whatever the defaults become.
NAIVE_TRAIN = {"batch_size": 1, "grad_accum": 1, "pack": False, "fused_optimizer": False, "autocast": False}
PROJECTION_TASKS = 100
PROJECTION_SAMPLES = 300  # training samples per task: ~300 steps of one sample (the fine-tune defaults)
PROJECTION_VIEWS = 8


def load_recorded(path: str = PAYLOADS) -> list[dict[str, Any]]:
    """The recorded tasks: ``[{task_id, samples, prompts, stop, max_seq_len}]``."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        recorded = json.load(f)
    tasks = []
    for t in recorded["tasks"]:
        train = next(c["payload"] for c in t["calls"] if c["method"] == "train")
        gen = next(c["payload"] for c in t["calls"] if c["method"] == "generate")
        tasks.append(
            {
                "task_id": t["task_id"],
                "samples": train["samples"],
                "max_seq_len": train["max_seq_len"],
                "prompts": gen["prompts"],
                "stop": gen["stop"],
                "calls": t["calls"],
            }
        )
    return tasks


def workload(tasks: list[dict[str, Any]], count: Callable[[list[str]], list[int]]) -> dict[str, Any]:
    """Token statistics of the recorded tasks (with the model's own tokenizer): what one task costs on average."""
    sample_tokens: list[float] = []
    answer_tokens: list[float] = []
    views: list[int] = []
    for t in tasks:
        s = t["samples"][:8]  # the samples of a task differ only by augmentation: their lengths barely vary
        prompts = count([x["prompt"] for x in s])
        answers = count([x["answer"] for x in s])
        sample_tokens.append(statistics.mean(p + a + 1 for p, a in zip(prompts, answers, strict=True)))
        answer_tokens.append(statistics.mean(a + 1 for a in answers))
        views.append(len(t["prompts"]))
    return {
        "tasks": [t["task_id"] for t in tasks],
        "mean_sample_tokens": statistics.mean(sample_tokens),
        "mean_answer_tokens": statistics.mean(answer_tokens),
        "views_per_task": statistics.mean(views),
    }


def fast_train(batch: int) -> dict[str, Any]:
    """The fast path's ``train`` settings: ``batch`` samples per step, packed into rows (fused AdamW and autocast
    follow the engine's defaults: on for CUDA)."""
    return {"batch_size": batch, "grad_accum": 1, "pack": True}


def _train_run(call: Call, samples: list[dict[str, str]], max_seq_len: int, steps: int, extra: dict) -> dict:
    payload = {"samples": samples, "max_seq_len": max_seq_len, "lr": 1e-4, "seed": 0, **extra}
    call("reset_adapter", {"seed": None})
    call("train", {**payload, "steps": 1})  # warm-up: kernels, allocator, this shape's optimizer path
    call("reset_adapter", {"seed": None})
    r, _ = call("train", {**payload, "steps": steps})
    # Throughput of the steps alone: tokenising the samples is a cost per call, counted per sample in the
    # projection (a short measured run would otherwise read it as slow steps).
    step_s = r.get("step_seconds", r["seconds"])
    return {
        "steps": r["steps"],
        "samples_per_step": extra.get("batch_size", 1) * extra.get("grad_accum", 1),
        "tokens": r["tokens"],
        "seconds": r["seconds"],
        "step_seconds": step_s,
        "prepare_s_per_sample": (r["seconds"] - step_s) / max(1, r["samples"] + r["skipped"]),
        "tokens_per_s": r["tokens"] / step_s,
        "ms_per_step": 1000 * step_s / r["steps"],
        "packed": r.get("packed"),
        "rows": r.get("rows"),
        "fused_optimizer": r.get("fused_optimizer"),
        "autocast": r.get("autocast"),
        "loss_first": r["losses"][0],
        "loss_last": r["losses"][-1],
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median tokens/s, plus every run's tokens/s (repeats alternate naive and fast, so both see
    the same machine load)."""
    ordered = sorted(runs, key=lambda r: r["tokens_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "runs_tokens_per_s": [r["tokens_per_s"] for r in runs]}


def measure_train(
    call: Call,
    samples: list[dict[str, str]],
    max_seq_len: int,
    *,
    batch: int,
    naive_steps: int,
    fast_steps: int,
    repeats: int = 1,
) -> dict[str, Any]:
    """Training tokens/s, naive (one unpacked sample per step, no fused ops) vs fast (``batch`` packed samples per
    step, fused AdamW and autocast on CUDA), on the same samples (one task's, as single-task fine-tuning trains)."""
    fast_cfg = fast_train(batch)
    naive_runs, fast_runs = [], []
    for _ in range(repeats):
        naive_runs.append(_train_run(call, samples, max_seq_len, naive_steps, NAIVE_TRAIN))
        fast_runs.append(_train_run(call, samples, max_seq_len, fast_steps, fast_cfg))
    naive, fast = _median_run(naive_runs), _median_run(fast_runs)
    return {
        "samples": len(samples),
        "repeats": repeats,
        "naive": naive,
        "fast": fast,
        "ratio": fast["tokens_per_s"] / naive["tokens_per_s"],
    }


def measure_train_compiled(
    call: Call,
    samples: list[dict[str, str]],
    max_seq_len: int,
    *,
    batch: int,
    steps: int,
    repeats: int = 1,
) -> dict[str, Any]:
    """Compiled training (``compile``) vs the fast eager path, on the same packed steps. The first compiled call
    compiles (``compile_seconds``: its seconds, two steps included); tokens/s are medians of alternating warm runs.
    ``max_loss_rel_diff``: the largest relative difference of the first and last step's loss between the two paths
    (float rounding when the compiled graph computes the same thing)."""
    fast_cfg = fast_train(batch)
    compiled_cfg = {**fast_cfg, "compile": True}
    call("reset_adapter", {"seed": None})
    payload = {"samples": samples, "max_seq_len": max_seq_len, "lr": 1e-4, "seed": 0, **compiled_cfg}
    first, _ = call("train", {**payload, "steps": 2})
    if not first.get("compiled"):
        raise RuntimeError("the engine did not compile training (packing did not run?)")
    eager_runs, compiled_runs = [], []
    for _ in range(repeats):
        eager_runs.append(_train_run(call, samples, max_seq_len, steps, fast_cfg))
        compiled_runs.append(_train_run(call, samples, max_seq_len, steps, compiled_cfg))
    eager, compiled = _median_run(eager_runs), _median_run(compiled_runs)
    diff = max(
        abs(c[k] - e[k]) / max(abs(e[k]), 1e-12)
        for c, e in zip(compiled_runs, eager_runs, strict=True)
        for k in ("loss_first", "loss_last")
    )
    return {
        "samples": len(samples),
        "repeats": repeats,
        "compile_seconds": first["seconds"],
        "eager": eager,
        "compiled": compiled,
        "tokens_per_s": compiled["tokens_per_s"],
        "ratio": compiled["tokens_per_s"] / eager["tokens_per_s"],
        "max_loss_rel_diff": diff,
    }


def _gen_summary(r: dict[str, Any]) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for o in r["outputs"]:
        reasons[o["finish_reason"]] = reasons.get(o["finish_reason"], 0) + 1
    return {
        "sequences": len(r["outputs"]),
        "tokens": r["tokens"],
        "seconds": r["seconds"],
        "tokens_per_s": r["tokens"] / r["seconds"],
        "finish_reasons": reasons,
    }


Outputs = list[dict[str, Any]]  # {text, mean_logprob} per prompt


def _gen_texts(call: Call, payload: dict[str, Any]) -> tuple[dict[str, Any], Outputs]:
    """One timed ``generate`` call: its summary and its outputs' texts and mean log-probabilities."""
    r, _ = call("generate", payload)
    return _gen_summary(r), [{"text": o["text"], "mean_logprob": o["mean_logprob"]} for o in r["outputs"]]


def _compare(outputs: Outputs, reference: Outputs) -> tuple[list[bool], float]:
    """Which outputs' texts equal the reference's, and the largest difference of their mean log-probabilities
    (far more sensitive than the texts: a random model's argmax rarely moves)."""
    equal = [o["text"] == r["text"] for o, r in zip(outputs, reference, strict=True)]
    diff = max(abs(o["mean_logprob"] - r["mean_logprob"]) for o, r in zip(outputs, reference, strict=True))
    return equal, diff


def _gen_run(call: Call, prompts: list[str], stop: list[str], tokens: int, extra: dict) -> dict:
    payload = {"prompts": prompts, "max_new_tokens": tokens, "stop": stop, **extra}
    call("generate", {**payload, "max_new_tokens": 2})  # warm-up
    r, _ = call("generate", payload)
    return _gen_summary(r)


def measure_generate(
    call: Call,
    prompts: list[str],
    stop: list[str],
    *,
    tokens: int,
    naive_prompts: int,
    repeats: int = 1,
    scale: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Generation tokens/s, naive (one prompt per call) vs fast (all views in one batch, finished rows dropped),
    the fast path with and without merging the adapter. ``scale``: also the merged fast path on the prompts
    repeated k times (k × the views in one batch), to show how far a larger batch (several tasks, as a multi-adapter
    backend could batch them) would go."""
    naive_runs, fast_runs, merged_runs = [], [], []
    for _ in range(repeats):
        singles = [_gen_run(call, [p], stop, tokens, {"batch_size": 1}) for p in prompts[:naive_prompts]]
        naive = {
            "sequences": len(singles),
            "tokens": sum(r["tokens"] for r in singles),
            "seconds": sum(r["seconds"] for r in singles),
        }
        naive_runs.append({**naive, "tokens_per_s": naive["tokens"] / naive["seconds"]})
        fast_runs.append(_gen_run(call, prompts, stop, tokens, {}))
        merged_runs.append(_gen_run(call, prompts, stop, tokens, {"merge": True}))
    naive, fast, merged = _median_run(naive_runs), _median_run(fast_runs), _median_run(merged_runs)
    scaled = {f"x{k}": _gen_run(call, prompts * k, stop, tokens, {"merge": True}) for k in scale}
    return {
        "max_new_tokens": tokens,
        "prompt_chars": [len(p) for p in prompts],
        "repeats": repeats,
        "naive": naive,
        "fast": fast,
        "fast_merged": merged,
        "ratio": fast["tokens_per_s"] / naive["tokens_per_s"],
        "ratio_merged": merged["tokens_per_s"] / naive["tokens_per_s"],
        "merge_pays": merged["tokens_per_s"] > fast["tokens_per_s"],
        "best_tokens_per_s": max(fast["tokens_per_s"], merged["tokens_per_s"]),
        "larger_batches_merged": scaled,
    }


def _merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several calls as one measurement: tokens and seconds summed."""
    tokens, seconds = sum(r["tokens"] for r in runs), sum(r["seconds"] for r in runs)
    return {
        "calls": len(runs),
        "sequences": sum(r["sequences"] for r in runs),
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
    }


def measure_static(
    call: Call, prompts: list[str], stop: list[str], *, tokens: int, repeats: int = 1
) -> tuple[dict[str, Any], Outputs]:
    """Generation tokens/s over a static KV cache (``static_cache``, eager) vs the dynamic loop, on the same prompts
    (one batch, greedy), alternating ``repeats`` times; ``same_outputs``: every static call's texts equal the
    dynamic loop's. Each path's ``prefill_s`` (the fastest of two 1-token calls) and ``step_ms`` ((median seconds −
    prefill_s) / (tokens − 1): one decoding step, assuming every row runs to ``tokens``) split its time.
    ``max_logprob_diff``: the largest difference of an output's mean log-probability from the dynamic loop's.
    Returns the result and the dynamic loop's outputs (the reference for :func:`measure_compiled`)."""
    payload = {"prompts": prompts, "max_new_tokens": tokens, "stop": stop}
    static = {**payload, "static_cache": True}
    call("generate", {**payload, "max_new_tokens": 2})  # warm-up of both paths (kernels, allocator)
    call("generate", {**static, "max_new_tokens": 2})
    dynamic_runs, static_runs = [], []
    reference: Outputs = []
    same, lp_diff = True, 0.0
    for i in range(repeats):
        run, outputs = _gen_texts(call, payload)
        dynamic_runs.append(run)
        reference = outputs if i == 0 else reference
        run, outputs = _gen_texts(call, static)
        static_runs.append(run)
        equal, diff = _compare(outputs, reference)
        same, lp_diff = same and all(equal), max(lp_diff, diff)
    dynamic, eager = _median_run(dynamic_runs), _median_run(static_runs)
    # Prefill vs decoding steps: a 1-token call is the prefill (+ one pick); the rest of a call is its steps.
    for run, extra in ((dynamic, payload), (eager, static)):
        run["prefill_s"] = min(call("generate", {**extra, "max_new_tokens": 1})[0]["seconds"] for _ in range(2))
        if tokens > 1:
            run["step_ms"] = 1000 * (run["seconds"] - run["prefill_s"]) / (tokens - 1)
    result = {
        "max_new_tokens": tokens,
        "sequences": len(prompts),
        "repeats": repeats,
        "dynamic": dynamic,
        "static": eager,
        "ratio": eager["tokens_per_s"] / dynamic["tokens_per_s"],
        "same_outputs": same,
        "max_logprob_diff": lp_diff,
    }
    return result, reference


def measure_compiled(
    call: Call,
    prompts: list[str],
    stop: list[str],
    *,
    tokens: int,
    reference: Outputs,
    dynamic_tokens_per_s: float,
    warm_calls: int = 3,
) -> dict[str, Any]:
    """Static-cache decoding with the step compiled (``compile``; CUDA graphs on CUDA). The first call compiles this
    (batch, length) bucket: its seconds are ``compile_seconds`` (decoding included); the tokens/s are the median of
    ``warm_calls`` later calls in the same bucket. ``same_outputs``: every call's texts equal ``reference``;
    ``max_logprob_diff`` as in :func:`measure_static`."""
    payload = {"prompts": prompts, "max_new_tokens": tokens, "stop": stop, "static_cache": True, "compile": True}
    first, outputs = _gen_texts(call, payload)  # no short warm-up: it could compile another length bucket
    equal, lp_diff = _compare(outputs, reference)
    same = all(equal)
    warm = []
    for _ in range(warm_calls):
        run, outputs = _gen_texts(call, payload)
        warm.append(run)
        equal, diff = _compare(outputs, reference)
        same, lp_diff = same and all(equal), max(lp_diff, diff)
    median = _median_run(warm)
    return {
        "max_new_tokens": tokens,
        "sequences": len(prompts),
        "compile_seconds": first["seconds"],
        "first_call": first,
        "warm_calls": warm_calls,
        "warm": median,
        "tokens_per_s": median["tokens_per_s"],
        "ratio": median["tokens_per_s"] / dynamic_tokens_per_s,
        "same_outputs": same,
        "max_logprob_diff": lp_diff,
    }


def measure_mixed(
    call: Call,
    tasks: list[dict[str, Any]],
    tmp: str,
    *,
    k: int,
    tokens: int,
    merge: bool = False,
    repeats: int = 1,
    train_batch: int = 2,
    train_steps: int = 1,
    train_lr: float = 1e-2,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """k tasks in one generation batch vs one call per task (greedy).

    Each of the first ``k`` recorded tasks gets a real adapter of its own: a reset with its own seed and
    ``train_steps`` packed steps on its samples, saved to ``tmp`` and kept in slot i (``keep_adapter``). ``train_lr``
    is large enough that the tasks' adapters give different greedy texts (at 1e-3 a random model's texts did not
    move), so ``same_outputs`` would see a row sent through the wrong adapter. Token limits: each task's limit is
    proportional to its recorded answers' length, the longest task's at ``tokens`` (so rows of shorter tasks leave
    the batch earlier, as in a real run). Separate: for each task, its adapter loaded
    (``load_adapter``: the live one) and its views generated in one call (``merge`` as given); mixed: all k × views
    in one ``generate`` with ``adapters`` = the slots and per-prompt ``max_new_tokens``. Alternates ``repeats`` times;
    tokens/s = tokens / the seconds ``generate`` reports (adapter loads not counted). Returns the result and what
    :func:`measure_mixed_fixed` needs: the mixed payload and the separate calls' outputs (the slots stay kept)."""
    chosen = tasks[:k]
    if len(chosen) < k:
        raise ValueError(f"{k} tasks asked for, {len(tasks)} recorded")
    stops = {tuple(t["stop"]) for t in chosen}
    if len(stops) != 1:
        raise ValueError(f"the recorded tasks' stop strings differ ({sorted(stops)}): one batch takes one list")
    stop = chosen[0]["stop"]
    answers = [
        max(call("count_tokens", {"texts": [s["answer"] for s in t["samples"]]})[0]["counts"]) + 1 for t in chosen
    ]
    limits = [max(1, round(tokens * a / max(answers))) for a in answers]
    paths, training = [], []
    for i, t in enumerate(chosen):
        call("reset_adapter", {"seed": 1000 + i})
        r, _ = call(
            "train",
            {
                "samples": t["samples"],
                "max_seq_len": t["max_seq_len"],
                "steps": train_steps,
                "batch_size": train_batch,
                "pack": True,
                "lr": train_lr,
                "seed": i,
            },
        )
        training.append({"task_id": t["task_id"], "seconds": r["seconds"], "loss_last": r["losses"][-1]})
        paths.append(call("save_adapter", {"path": os.path.join(tmp, f"mixed-adapter-{i}")})[0]["path"])
        call("keep_adapter", {"slot": i})
    prompts = [p for t in chosen for p in t["prompts"]]
    mixed_payload = {
        "prompts": prompts,
        "max_new_tokens": [lim for t, lim in zip(chosen, limits, strict=True) for _ in t["prompts"]],
        "adapters": [i for i, t in enumerate(chosen) for _ in t["prompts"]],
        "stop": stop,
    }

    def separate_call(i: int, limit: int) -> tuple[dict[str, Any], Outputs]:
        call("load_adapter", {"path": paths[i]})
        payload = {"prompts": chosen[i]["prompts"], "max_new_tokens": limit, "stop": stop, "merge": merge}
        return _gen_texts(call, payload)

    separate_call(0, 2)  # warm-up of both paths
    call("generate", {**mixed_payload, "max_new_tokens": [2] * len(prompts)})
    separate_runs, mixed_runs = [], []
    reference: Outputs = []
    same: list[bool] = []
    lp_diff = 0.0
    for rep in range(repeats):
        runs = []
        for i, limit in enumerate(limits):
            run, outputs = separate_call(i, limit)
            runs.append(run)
            reference += outputs if rep == 0 else []
        separate_runs.append(_merge_runs(runs))
        run, outputs = _gen_texts(call, mixed_payload)
        mixed_runs.append(run)
        equal, diff = _compare(outputs, reference)
        same, lp_diff = same + equal, max(lp_diff, diff)
    separate, mixed = _median_run(separate_runs), _median_run(mixed_runs)
    result = {
        "k": k,
        "task_ids": [t["task_id"] for t in chosen],
        "views": [len(t["prompts"]) for t in chosen],
        "prompt_chars": [len(t["prompts"][0]) for t in chosen],
        "answer_tokens": answers,
        "max_new_tokens": limits,
        "repeats": repeats,
        "adapter_training": training,
        "separate_merge": merge,
        "separate": separate,
        "mixed": mixed,
        "ratio": mixed["tokens_per_s"] / separate["tokens_per_s"],
        "same_outputs": all(same),
        "same_count": f"{sum(same)}/{len(same)}",
        "max_logprob_diff": lp_diff,
    }
    return result, {"payload": mixed_payload, "reference": reference}


def measure_mixed_fixed(
    call: Call,
    state: dict[str, Any],
    *,
    compile: bool,
    separate_tokens_per_s: float,
    warm_calls: int = 3,
) -> dict[str, Any]:
    """The mixed batch of :func:`measure_mixed` on the fixed-shape path (``static_cache``; ``compile``: compiled),
    each row reading its task's adapter from stacked copies (multi_lora.py). The first call is timed apart
    (``compile_seconds`` when compiling; it may also allocate the bucket); tokens/s are the median of ``warm_calls``
    later calls. ``ratio`` is against the separate calls; ``same_outputs`` / ``max_logprob_diff`` against their
    outputs."""
    payload = {**state["payload"], "static_cache": True, "compile": compile}
    first, outputs = _gen_texts(call, payload)
    equal, lp_diff = _compare(outputs, state["reference"])
    same = list(equal)
    warm = []
    for _ in range(warm_calls):
        run, outputs = _gen_texts(call, payload)
        warm.append(run)
        equal, diff = _compare(outputs, state["reference"])
        same, lp_diff = same + equal, max(lp_diff, diff)
    median = _median_run(warm)
    return {
        "compile": compile,
        "first_call_seconds": first["seconds"],
        **({"compile_seconds": first["seconds"]} if compile else {}),
        "warm_calls": warm_calls,
        "warm": median,
        "tokens_per_s": median["tokens_per_s"],
        "ratio": median["tokens_per_s"] / separate_tokens_per_s,
        "same_outputs": all(same),
        "same_count": f"{sum(same)}/{len(same)}",
        "max_logprob_diff": lp_diff,
    }


def best_generation(
    gen: dict[str, Any], static: dict[str, Any] | None = None, mixed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The fastest measured generation path (tokens/s) among those that ran: fast, fast merged, static eager,
    static compiled (warm; its ``compile_seconds`` come with it), k tasks mixed in one batch (dynamic loop, static,
    compiled)."""
    paths: dict[str, dict[str, Any]] = {
        "fast": {"tokens_per_s": gen["fast"]["tokens_per_s"]},
        "fast_merged": {"tokens_per_s": gen["fast_merged"]["tokens_per_s"]},
    }
    if static and "static" in static:
        paths["static"] = {"tokens_per_s": static["static"]["tokens_per_s"], "same_outputs": static["same_outputs"]}
        c = static.get("compiled") or {}
        if "tokens_per_s" in c:
            paths["compiled"] = {
                "tokens_per_s": c["tokens_per_s"],
                "same_outputs": c["same_outputs"],
                "compile_seconds": c["compile_seconds"],
            }
    if mixed and "mixed" in mixed:
        paths[f"mixed_k{mixed['k']}"] = {
            "tokens_per_s": mixed["mixed"]["tokens_per_s"],
            "same_outputs": mixed["same_outputs"],
        }
        for mode in ("static", "compiled"):
            m = mixed.get(mode) or {}
            if "tokens_per_s" in m:
                paths[f"mixed_k{mixed['k']}_{mode}"] = {
                    "tokens_per_s": m["tokens_per_s"],
                    "same_outputs": m["same_outputs"],
                    **({"compile_seconds": m["compile_seconds"]} if "compile_seconds" in m else {}),
                }
    name = max(paths, key=lambda p: paths[p]["tokens_per_s"])
    return {"path": name, **paths[name], "paths": paths}


def project(
    work: dict[str, Any],
    train: dict,
    gen: dict,
    overhead_ms: float,
    start_s: float,
    best: dict[str, Any] | None = None,
    train_compiled: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Minutes for a whole 100-task single-task run at the measured rates, naive and fast. ``best``
    (:func:`best_generation`): the fast run generates on that path (a compiled path adds its ``compile_seconds``
    once); without it, the faster of fast and fast merged. ``train_compiled`` (:func:`measure_train_compiled`): the
    fast run trains compiled when that was faster (adding its ``compile_seconds`` once)."""
    train_tokens = PROJECTION_SAMPLES * work["mean_sample_tokens"]
    gen_tokens = PROJECTION_VIEWS * work["mean_answer_tokens"]
    if best is None:
        best = {"path": "fast_merged" if gen["merge_pays"] else "fast", "tokens_per_s": gen["best_tokens_per_s"]}
    compile_s = best.get("compile_seconds", 0.0)
    train_tps, train_path = train["fast"]["tokens_per_s"], "fast"
    if train_compiled and train_compiled.get("tokens_per_s", 0.0) > train_tps:
        train_tps, train_path = train_compiled["tokens_per_s"], "compiled"
        compile_s += train_compiled["compile_seconds"]

    def minutes(train_tps: float, gen_tps: float, overhead_s: float, extra_s: float = 0.0) -> dict[str, float]:
        per_task = train_tokens / train_tps + gen_tokens / gen_tps + overhead_s
        return {"per_task_s": per_task, "minutes": (PROJECTION_TASKS * per_task + start_s + extra_s) / 60}

    # Tokenising a task's samples, once per task (each run's own figure).
    def prepare_s(run: dict[str, Any]) -> float:
        return PROJECTION_SAMPLES * run.get("prepare_s_per_sample", 0.0)

    return {
        "tasks": PROJECTION_TASKS,
        "train_tokens_per_task": train_tokens,
        "generated_tokens_per_task": gen_tokens,
        "assumes": (
            f"{PROJECTION_SAMPLES} training samples of {work['mean_sample_tokens']:.0f} tokens and "
            f"{PROJECTION_VIEWS} views x {work['mean_answer_tokens']:.0f} answer tokens per task (means of the "
            "recorded tasks); generation runs every view to its full answer; fast generation on the "
            f"{best['path']} path, training on the {train_path} path"
            + (f" (+ {compile_s:.0f} s of compiling, once)" if compile_s else "")
        ),
        "fast_generation_path": best["path"],
        "fast_train_path": train_path,
        "naive": minutes(
            train["naive"]["tokens_per_s"], gen["naive"]["tokens_per_s"], overhead_ms / 1000 + prepare_s(train["naive"])
        ),
        "fast": minutes(train_tps, best["tokens_per_s"], overhead_ms / 1000 + prepare_s(train["fast"]), compile_s),
    }


def measure_overhead(call: Call, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Replay each task's recorded calls; overhead = round trips − train/generate compute (see bench/README.md)."""
    rows = []
    for t in tasks:
        wall = compute = reset = 0.0
        for c in t["calls"]:
            r, ms = call(c["method"], c["payload"])
            wall += ms
            if c["method"] in ("train", "generate"):
                compute += 1000 * r["seconds"]
            if c["method"] == "reset_adapter":
                reset += ms
        rows.append({"task_id": t["task_id"], "overhead_ms": wall - compute, "reset_ms": reset})
    return {
        "engine_overhead_ms_median": statistics.median(r["overhead_ms"] for r in rows),
        "reset_ms_median": statistics.median(r["reset_ms"] for r in rows),
        "tasks": rows,
    }


def _table(result: dict[str, Any]) -> str:
    tr, ge, ov, pr = result["train"], result["generate"], result["overhead"], result["projection"]
    lines = [
        f"Fast paths vs naive, one run ({result['date']})",
        f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, load avg "
        f"{result['machine']['load_avg']} (start) / {result['machine']['load_avg_end']} (end); "
        f"torch {result['machine']['torch']}, {result['threads']} thread(s); "
        f"medians of {result['train']['repeats']} alternating repeats",
        f"model: {result['model']['desc']}",
        "",
        f"{'measure':42} {'naive':>10} {'fast':>10} {'ratio':>8}",
        f"{'train tokens/s':42} {tr['naive']['tokens_per_s']:10.0f} {tr['fast']['tokens_per_s']:10.0f} "
        f"{tr['ratio']:7.2f}x",
        f"{'generate tokens/s (fast: 8 views, 1 batch)':42} {ge['naive']['tokens_per_s']:10.1f} "
        f"{ge['fast']['tokens_per_s']:10.1f} {ge['ratio']:7.2f}x",
        f"{'generate tokens/s, adapter merged':42} {'':>10} {ge['fast_merged']['tokens_per_s']:10.1f} "
        f"{ge['ratio_merged']:7.2f}x",
        f"{'per-task overhead (ms; naive: fresh process)':42} "
        f"{(ov['naive_s_median'] or float('nan')) * 1000:10.0f} {ov['engine_overhead_ms_median']:10.1f} "
        f"{(ov['ratio'] or float('nan')):7.0f}x",
        f"{'100-task run, projected (minutes)':42} {pr['naive']['minutes']:10.1f} {pr['fast']['minutes']:10.1f} "
        f"{pr['naive']['minutes'] / pr['fast']['minutes']:7.2f}x",
        "",
        f"train: task {tr['task_id']}; naive {tr['naive']['steps']} steps x 1 sample; "
        f"fast {tr['fast']['steps']} steps x {tr['fast']['samples_per_step']} samples "
        f"packed into {tr['fast']['rows']} rows "
        f"(fused AdamW {tr['fast']['fused_optimizer']}, autocast {tr['fast']['autocast']})",
        f"generate: {ge['max_new_tokens']} new tokens max; finish reasons fast {ge['fast']['finish_reasons']}",
        *(
            f"generate, merged, {r['sequences']} sequences in one batch: {r['tokens_per_s']:.1f} tokens/s"
            for r in ge["larger_batches_merged"].values()
        ),
        f"projection: {pr['assumes']}",
        *_paths_table(result),
    ]
    return "\n".join(lines)


def _paths_table(result: dict[str, Any]) -> list[str]:
    """The rows of the static / compiled decode, the mixed-batch and the compiled-training measurements (each
    against its baseline)."""
    st, mx = result.get("static_decode") or {}, result.get("mixed_batch") or {}

    def row(label: str, base: float, new: float, r: dict[str, Any]) -> str:
        same = "yes" if r["same_outputs"] else "NO"
        return f"{label:42} {base:10.1f} {new:10.1f} {new / base:7.2f}x {same:>5} {r['max_logprob_diff']:9.1e}"

    head = (
        f"{'generate tokens/s, greedy, same prompts':42} {'baseline':>10} {'path':>10} {'ratio':>8} {'same':>5} "
        f"{'logprob Δ':>9}"
    )
    lines = ["", head]
    if "static" in st:
        d = st["dynamic"]["tokens_per_s"]
        eager = st["static"]["tokens_per_s"]
        lines.append(row("static KV cache, eager (vs dynamic loop)", d, eager, st))
        c = st.get("compiled") or {}
        if "tokens_per_s" in c:
            lines.append(row("static KV cache, compiled, warm median", d, c["tokens_per_s"], c))
        else:
            lines.append(f"{'static KV cache, compiled':42} {c.get('skipped') or c.get('error') or 'not run'}")
    else:
        lines.append(f"{'static KV cache':42} {st.get('skipped') or st.get('error') or 'not run'}")
    if "mixed" in mx:
        base = mx["separate"]["tokens_per_s"]
        lines.append(row(f"{mx['k']} tasks mixed, 1 batch (vs {mx['k']} calls)", base, mx["mixed"]["tokens_per_s"], mx))
        for mode in ("static", "compiled"):
            m = mx.get(mode) or {}
            label = f"{mx['k']} tasks mixed, {mode} (warm median)"
            if "tokens_per_s" in m:
                lines.append(row(label, base, m["tokens_per_s"], m))
            else:
                lines.append(f"{label:42} {m.get('skipped') or m.get('error') or 'not run'}")
    else:
        lines.append(f"{'tasks mixed in one batch':42} {mx.get('skipped') or mx.get('error') or 'not run'}")
    lines.append(
        "same: every text equals the baseline's; logprob Δ: the largest |mean log-prob difference| of an output"
    )
    if "static" in st:
        c = st.get("compiled") or {}
        first = f"; compile: first call {c['compile_seconds']:.1f} s" if "compile_seconds" in c else ""
        lines.append(f"static: {st['sequences']} views, {st['max_new_tokens']} new tokens max{first}")
        d, e = st["dynamic"], st["static"]
        if "step_ms" in d:
            lines.append(
                f"static: prefill {d['prefill_s']:.3f} s dynamic / {e['prefill_s']:.3f} s static; one step "
                f"{d['step_ms']:.2f} ms dynamic / {e['step_ms']:.2f} ms static"
            )
    if "mixed" in mx:
        lines.append(
            f"mixed: tasks {', '.join(mx['task_ids'])}, {sum(mx['views'])} rows, max_new_tokens per task "
            f"{mx['max_new_tokens']}, outputs equal {mx['same_count']}; separate calls merge={mx['separate_merge']}"
        )
        c = mx.get("compiled") or {}
        if "compile_seconds" in c:
            lines.append(f"mixed, compiled: first call {c['compile_seconds']:.1f} s")
    tc = result.get("train_compiled") or {}
    lines.append("")
    if "compiled" in tc:
        lines.append(
            f"{'train tokens/s, compiled (vs fast eager)':42} {tc['eager']['tokens_per_s']:10.0f} "
            f"{tc['tokens_per_s']:10.0f} {tc['ratio']:7.2f}x  loss Δ {tc['max_loss_rel_diff']:.1e} (relative); "
            f"compile: first call {tc['compile_seconds']:.1f} s"
        )
    else:
        lines.append(f"{'train, compiled':42} {tc.get('skipped') or tc.get('error') or 'not run'}")
    return lines


def optional_part(name: str, wanted: bool, flag: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A compiled part: ``{"skipped": flag}`` when not ``wanted``; a failure (e.g. no C++ compiler for inductor)
    is recorded as ``{"error": ...}`` and the run goes on."""
    if not wanted:
        return {"skipped": flag}
    print(f"{name} ...", file=sys.stderr, flush=True)
    try:
        return fn()
    except RuntimeError as e:
        return {"error": str(e)[:4000]}


def machine(threads: int) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (e.g. models/embedded); default: a tiny random model, built here")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=8, help="samples per step on the fast path")
    parser.add_argument("--naive-steps", type=int, default=8)
    parser.add_argument("--fast-steps", type=int, default=2)
    parser.add_argument("--gen-tokens", type=int, default=48)
    parser.add_argument("--naive-prompts", type=int, default=2)
    parser.add_argument("--train-task", default="00dbd492", help="recorded task whose samples are trained on")
    parser.add_argument("--gen-task", default="00dbd492", help="recorded task whose 8 views are generated")
    parser.add_argument(
        "--scale", type=int, nargs="*", default=[], help="also generate the views x k in one batch (merged)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating naive/fast repeats; medians reported")
    parser.add_argument("--tasks", type=int, default=2, help="recorded tasks replayed for the overhead")
    parser.add_argument("--naive-procs", type=int, default=1, help="fresh-process runs for the naive overhead")
    parser.add_argument("--static-tokens", type=int, default=48, help="new tokens of the static / compiled decode")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=True, help="also the compiled static decode"
    )
    parser.add_argument("--warm-calls", type=int, default=3, help="compiled decode: calls after the compiling one")
    parser.add_argument(
        "--compile-train",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also compiled training (vs the fast eager path)",
    )
    parser.add_argument("--mixed-k", type=int, default=4, help="tasks in the mixed batch (0: skip it)")
    parser.add_argument("--mixed-tokens", type=int, default=48, help="mixed batch: new tokens of the longest task")
    parser.add_argument("--json", action="store_true", help="print the JSON object instead of the table")
    parser.add_argument("--out", help="also write the JSON object here")
    args = parser.parse_args()

    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the worker inherits it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, os.path.join(ROOT, "python"))
    # bench/gpu/bench.py holds the worker client and the naive fresh-process run; loaded by path (it is no package).
    spec = importlib.util.spec_from_file_location("gpu_bench", os.path.join(HERE, "gpu", "bench.py"))
    gpu_bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(gpu_bench)  # type: ignore[union-attr]
    Worker, run_naive = gpu_bench.Worker, gpu_bench.run_naive

    result: dict[str, Any] = {
        "benchmark": "fast-vs-naive",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "threads": args.threads,
        "machine": machine(args.threads),
        "settings": vars(args),
    }
    tasks = load_recorded()
    with tempfile.TemporaryDirectory(prefix="arc-ttft-speed-") as tmp:
        start = time.perf_counter()
        w = Worker()
        try:
            model = args.model
            if model is None:
                model = os.path.join(tmp, "tiny")
                w.call("make_tiny_model", {"path": model, "seed": 0})
            lora = {"r": 16, "alpha": 32, "target_modules": "all-linear"}
            info, _ = w.call("load_model", {"model": model, "device": args.device, "lora": lora, "seed": 0})
            start_s = time.perf_counter() - start
            result["model"] = {
                "path": args.model or "tiny random stand-in (makeTinyModel defaults)",
                "n_params": info["n_params"],
                "n_trainable": info["n_trainable"],
                "device": info["device"],
                "dtype": info["dtype"],
                "desc": f"{args.model or 'tiny random Qwen2 stand-in'} ({info['n_params']:,} params, "
                f"{info['dtype']}, {info['device']}), LoRA r 16 all-linear",
            }
            result["engine_start_s"] = start_s

            def count(texts: list[str]) -> list[int]:
                return w.call("count_tokens", {"texts": texts})[0]["counts"]

            work = workload(tasks, count)
            result["workload"] = work
            train_task = next(t for t in tasks if t["task_id"] == args.train_task)
            print("train ...", file=sys.stderr, flush=True)
            result["train"] = measure_train(
                w.call,
                train_task["samples"],
                train_task["max_seq_len"],
                batch=args.train_batch,
                naive_steps=args.naive_steps,
                fast_steps=args.fast_steps,
                repeats=args.repeats,
            )
            result["train"]["task_id"] = train_task["task_id"]
            gen_task = next(t for t in tasks if t["task_id"] == args.gen_task)
            print("generate ...", file=sys.stderr, flush=True)
            result["generate"] = measure_generate(
                w.call,
                gen_task["prompts"],
                gen_task["stop"],
                tokens=args.gen_tokens,
                naive_prompts=args.naive_prompts,
                repeats=args.repeats,
                scale=tuple(args.scale),
            )
            print("static decode ...", file=sys.stderr, flush=True)
            static, reference = measure_static(
                w.call, gen_task["prompts"], gen_task["stop"], tokens=args.static_tokens, repeats=args.repeats
            )
            static["task_id"] = gen_task["task_id"]
            result["static_decode"] = static
            static["compiled"] = optional_part(
                "compiled decode",
                args.compile,
                "--no-compile",
                lambda: measure_compiled(
                    w.call,
                    gen_task["prompts"],
                    gen_task["stop"],
                    tokens=args.static_tokens,
                    reference=reference,
                    dynamic_tokens_per_s=static["dynamic"]["tokens_per_s"],
                    warm_calls=args.warm_calls,
                ),
            )
            if args.mixed_k > 0:
                print("mixed batch ...", file=sys.stderr, flush=True)
                mixed, mixed_state = measure_mixed(
                    w.call,
                    tasks,
                    tmp,
                    k=args.mixed_k,
                    tokens=args.mixed_tokens,
                    merge=result["generate"]["merge_pays"],
                    repeats=args.repeats,
                )
                result["mixed_batch"] = mixed
                for mode, wanted, flag in (("static", True, ""), ("compiled", args.compile, "--no-compile")):
                    mixed[mode] = optional_part(
                        f"mixed batch, {mode}",
                        wanted,
                        flag,
                        lambda mode=mode: measure_mixed_fixed(
                            w.call,
                            mixed_state,
                            compile=mode == "compiled",
                            separate_tokens_per_s=mixed["separate"]["tokens_per_s"],
                            warm_calls=args.warm_calls,
                        ),
                    )
            else:
                result["mixed_batch"] = {"skipped": "--mixed-k 0"}
            result["train_compiled"] = optional_part(
                "compiled training",
                args.compile_train,
                "--no-compile-train",
                lambda: measure_train_compiled(
                    w.call,
                    train_task["samples"],
                    train_task["max_seq_len"],
                    batch=args.train_batch,
                    steps=args.fast_steps,
                    repeats=args.repeats,
                ),
            )
            print("overhead ...", file=sys.stderr, flush=True)
            overhead = measure_overhead(w.call, tasks[: args.tasks])
        finally:
            w.close()
        naive = []
        for t in tasks[: args.naive_procs]:
            naive.append(run_naive(model, t["samples"], t["max_seq_len"], tmp, device=args.device, lora=lora))
        naive_s = statistics.median(r["seconds"] for r in naive) if naive else None
        overhead["naive_s_median"] = naive_s
        overhead["naive_runs"] = naive
        overhead["ratio"] = 1000 * naive_s / overhead["engine_overhead_ms_median"] if naive_s else None
        result["overhead"] = overhead
    result["machine"]["load_avg_end"] = round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None
    result["generate_best"] = best_generation(result["generate"], result["static_decode"], result["mixed_batch"])
    result["projection"] = project(
        work,
        result["train"],
        result["generate"],
        overhead["engine_overhead_ms_median"],
        start_s,
        result["generate_best"],
        result.get("train_compiled"),
    )
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text if args.json else _table(result))


if __name__ == "__main__":
    main()
