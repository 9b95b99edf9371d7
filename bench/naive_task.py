"""The naive per-task baseline of the overhead benchmarks: one fresh Python process per ARC task.

arc24's Kaggle notebook fine-tuned each task in a new process: start Python, import torch / transformers / peft,
load the base model, attach a LoRA adapter, train, exit. This script does exactly that once, with the engine's own
loading, LoRA and training code (``arc_ttft.model`` / ``arc_ttft.lora`` / ``arc_ttft.train``), so the only
difference from the engine is *where the fixed costs are paid*. It trains ``--steps`` optimizer steps (default 1)
on the samples of ``--samples`` (a JSON array of ``{prompt, answer}``, e.g. what ``fineTuneTask`` sends) and prints
one JSON line with the time of each phase, measured inside the process (interpreter start-up is not visible from
here: the caller times the whole process from spawn to exit).

Usage::

    python bench/naive_task.py MODEL [--samples FILE] [--device auto|cpu|cuda] [--dtype auto|float32|bfloat16]
                                     [--lora-r 16] [--lora-alpha 32] [--steps 1] [--max-seq-len 8192]
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402 — the clock above must start before anything else is imported
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

# The engine's package lives in <repo>/python; this script sits in <repo>/bench.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model folder (or Hugging Face id)")
    parser.add_argument("--samples", help="JSON file: array of {prompt, answer}; default: one short sample")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=float, default=32.0)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--max-seq-len", type=int, default=8192)
    args = parser.parse_args()

    t = time.perf_counter()
    # What the notebook paid on every task: the heavy imports...
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401

    from arc_ttft import lora, model
    from arc_ttft.train import TrainConfig, train

    imports_s = time.perf_counter() - t

    if args.samples:
        with open(args.samples, encoding="utf-8") as f:
            samples = json.load(f)
    else:
        samples = [{"prompt": "I\n0123\n4567\nO\n", "answer": "7654\n3210\n"}]

    # ...the model load (CUDA context creation included on a GPU)...
    t = time.perf_counter()
    device = model.resolve_device(args.device)
    dtype = model.resolve_dtype(args.dtype, device)
    base, tokenizer = model.load_base(args.model, dtype, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    load_s = time.perf_counter() - t

    # ...attaching a fresh LoRA adapter...
    t = time.perf_counter()
    peft_model, _ = lora.attach_lora(
        base,
        r=args.lora_r,
        alpha=args.lora_alpha,
        dropout=0.0,
        target_modules="all-linear",
        modules_to_save=None,
        adapter_init=None,
        seed=0,
    )
    attach_s = time.perf_counter() - t

    # ...and the first training step (cold kernels, allocator warm-up).
    t = time.perf_counter()
    result = train(peft_model, tokenizer, samples, TrainConfig(steps=args.steps, max_seq_len=args.max_seq_len))
    train_s = time.perf_counter() - t

    print(
        json.dumps(
            {
                "pid": os.getpid(),
                "device": str(device),
                "dtype": str(dtype).removeprefix("torch."),
                "imports_s": imports_s,
                "load_s": load_s,
                "attach_s": attach_s,
                "train_s": train_s,
                "train_compute_s": result["seconds"],
                "steps": result["steps"],
                "tokens": result["tokens"],
                "in_process_s": time.perf_counter() - _T0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
