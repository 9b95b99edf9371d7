"""GPU benchmark of the engine (run it through ``bash bench/gpu/run.sh``; see bench/README.md).

Measures, on one model with random weights built here (default: the Qwen2-0.5B body, see SHAPES), every figure
against the naive path in the same run (the measurements are bench/speed.py's, shared with the CPU benchmark):

1. train throughput, naive vs fast: tokens/s of the engine's ``train`` on the samples of one recorded ARC task
   (LoRA r32 on every linear layer). Naive: one sample per step, unpacked, plain AdamW loop, no autocast. Fast:
   ARC_TTFT_BENCH_TRAIN_BATCH samples per step packed into rows, fused AdamW, bfloat16 autocast;
2. generation throughput, naive vs fast: tokens/s of the engine's ``generate`` on that task's 8 recorded view
   prompts, greedy. Naive: one prompt per call. Fast: the 8 views in one batch, finished rows leaving the batch,
   with and without ``merge`` (LoRA merged into the base weights for the call);
3. per-task overhead, engine vs naive: the engine is ``arc_ttft.entry.dispatch`` in a long-lived worker process
   (bench/gpu/worker.py, JSON over pipes, the model loaded once) replaying the exact calls ``fineTuneTask`` (1 step)
   and ``predictTask`` made for real ARC tasks (bench/gpu/payloads.json.gz, recorded by bench/overhead.ts); its
   overhead is the round trips' wall time minus the compute seconds Python reports for train and generate. The
   naive cost is spawn-to-exit of ``python bench/naive_task.py`` (imports, model load, LoRA attach, one step);
4. a projection of a whole 100-task single-task run from the figures above (bench/speed.py ``project``), on the
   fastest generation path measured (``generate_best``, computed again after 5 and 6);
5. static-KV-cache decode vs the dynamic loop (``static_decode``), same 8 views, greedy: eager, then compiled
   (``static_decode.compiled``: ``compile_seconds`` of the first call, tokens/s the median of 3 warm calls; CUDA
   graphs on CUDA), each with ``same_outputs`` (texts equal to the dynamic loop's);
6. ARC_TTFT_BENCH_MIXED_K tasks in one mixed-adapter batch vs one call per task (``mixed_batch``): each task a
   real adapter of its own kept in a slot, per-prompt ``max_new_tokens`` (bench/speed.py ``measure_mixed``); then
   the same batch on the fixed-shape path with per-row adapters, eager and compiled (``mixed_batch.static``,
   ``mixed_batch.compiled``: bench/speed.py ``measure_mixed_fixed``);
7. compiled training vs the fast eager path (``train_compiled``): the same packed steps with ``compile``, the first
   call compiling (``compile_seconds``), then alternating warm runs (bench/speed.py ``measure_train_compiled``);
   then, on CUDA, the fast path with the model loaded again under flex attention (``train_flex``: packed rows of
   max_seq_len, each sample attending only to itself), against the fast path under the default attention (SDPA).

Time budget on an H100 (0.5b shape, 256 new tokens; estimates until a GPU run records ``part_seconds``): build +
engine start ~25 s, train ~20 s, generate ~35 s, overhead ~10 s + ~20 s per naive process, then the parts, in this
order: the static decode ~20 s, the mixed batch ~45 s and its static run ~45 s (eager, cheap), the compiled decode
~80 s (mostly the compile), compiled training ~80 s (likewise), the mixed batch compiled ~80 s, flex-attention
training ~60 s. Each part starts only with half its budget left, and its calls are cut at twice its budget
(ARC_TTFT_BENCH_PART_CAP) or at the deadline: the worker is stopped, the part recorded as ``skipped``, and the next
part gets a fresh worker when there is time. A failing stage or part is recorded (``error``, ``naive_errors``) and
the rest still runs. Each part records the compile counters and the CUDA memory peak of its own calls (``after``).
The naive processes after the first run last, in the time left, each only when it would end before the deadline
(``overhead`` and the projection are updated then). Training throughput counts the steps alone (``step_seconds``);
tokenising the samples is added per task in the projection.

Everything goes through the engine's Python package (python/arc_ttft); only Node is left out (it may be missing on
a GPU machine): the bridge's Node hops are measured on CPU by bench/overhead.ts.

Settings (environment): ARC_TTFT_BENCH_SHAPE (``0.5b`` | ``tiny``), ARC_TTFT_BENCH_DEVICE (``auto``),
ARC_TTFT_BENCH_NAIVE (naive processes, 3: the first in the overhead stage, the others last, in the time left),
ARC_TTFT_BENCH_TASKS (recorded tasks replayed, 6; tiny 2), ARC_TTFT_BENCH_TRAIN_STEPS (naive training steps, 10;
tiny 4), ARC_TTFT_BENCH_TRAIN_BATCH (fast: samples per step, 16; tiny 8), ARC_TTFT_BENCH_TRAIN_TASK (00dbd492),
ARC_TTFT_BENCH_GEN_TOKENS (256; tiny 16),
ARC_TTFT_BENCH_GEN_NAIVE (prompts generated one by one, 2), ARC_TTFT_BENCH_GEN_SCALE (k: also the views × k in one
batch, merged; comma-separated, "4"; empty: none), ARC_TTFT_BENCH_DEADLINE_S (360; run.sh: its limit - 40: naive
processes that would end past it are skipped, the parts are cut at it), ARC_TTFT_BENCH_PART_CAP (2: a part's
calls are cut at this many times its budget), ARC_TTFT_BENCH_MIXED_K (tasks in the mixed batch, 4;
0: skip it), ARC_TTFT_BENCH_COMPILE (1; 0: skip the compiled decode), ARC_TTFT_BENCH_COMPILE_TRAIN (1; 0: skip the
compiled training), ARC_TTFT_BENCH_FLEX (1; 0: skip training under flex attention), ARC_TTFT_BENCH_FLEX_ATTENTION
(flex_attention: the attention of that part, e.g. flash_attention_2 where flash-attn is installed),
OUT (a folder: gpu-bench.json is written there after every stage).
Prints progress on stderr and one JSON object on the last line of stdout.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import speed  # noqa: E402 — bench/speed.py: the fast-vs-naive measurements and the projection

T0 = time.perf_counter()

# The Qwen2-0.5B body (config of Qwen/Qwen2-0.5B) with the engine's character tokenizer: the embedding and the
# output layer keep the full 151936-row vocabulary, so their cost is the real model's; the tokenizer maps each
# character to one token (the ids above 258 are never produced by it, only by the random model's argmax).
SHAPES: dict[str, dict[str, Any]] = {
    "0.5b": {
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "tie_word_embeddings": True,
    },
    # Same code path on a CPU in seconds: a small body, the same full-size vocabulary.
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 256,
        "vocab_size": 151936,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
    },
}
LORA = {"r": 32, "alpha": 64, "dropout": 0.0, "target_modules": "all-linear", "modules_to_save": None}
PAYLOADS = os.path.join(HERE, "payloads.json.gz")

SHAPE = os.environ.get("ARC_TTFT_BENCH_SHAPE", "0.5b")
DEVICE = os.environ.get("ARC_TTFT_BENCH_DEVICE", "auto")
TINY = SHAPE == "tiny"
N_NAIVE = int(os.environ.get("ARC_TTFT_BENCH_NAIVE", "3"))
N_TASKS = int(os.environ.get("ARC_TTFT_BENCH_TASKS", "2" if TINY else "6"))
TRAIN_STEPS = int(os.environ.get("ARC_TTFT_BENCH_TRAIN_STEPS", "4" if TINY else "10"))  # naive steps
TRAIN_BATCH = int(os.environ.get("ARC_TTFT_BENCH_TRAIN_BATCH", "8" if TINY else "16"))  # fast: samples per step
TRAIN_TASK = os.environ.get("ARC_TTFT_BENCH_TRAIN_TASK", "00dbd492")  # recorded task trained and generated on
GEN_TOKENS = int(os.environ.get("ARC_TTFT_BENCH_GEN_TOKENS", "16" if TINY else "256"))
GEN_NAIVE_PROMPTS = int(os.environ.get("ARC_TTFT_BENCH_GEN_NAIVE", "2"))
# Also the merged fast path on k copies of the views in one batch (what batching several tasks would give).
GEN_SCALE = tuple(int(k) for k in os.environ.get("ARC_TTFT_BENCH_GEN_SCALE", "4").split(",") if k.strip())
DEADLINE_S = float(os.environ.get("ARC_TTFT_BENCH_DEADLINE_S", "360"))
# The generation paths measured after the overhead stage, with the seconds budgeted for each on an H100 (0.5b shape,
# 256 new tokens; estimates, not yet measured on a GPU). A part starts only with at least half its budget left,
# and its calls end at PART_CAP × its budget or the deadline (the worker is stopped then): a slow part is recorded
# as skipped.
MIXED_K = int(os.environ.get("ARC_TTFT_BENCH_MIXED_K", "4"))  # tasks in the mixed batch; 0: skip it
COMPILE = os.environ.get("ARC_TTFT_BENCH_COMPILE", "1") != "0"  # the compiled static decode; 0: skip it
COMPILE_TRAIN = os.environ.get("ARC_TTFT_BENCH_COMPILE_TRAIN", "1") != "0"  # compiled training; 0: skip it
FLEX = os.environ.get("ARC_TTFT_BENCH_FLEX", "1") != "0"  # training under flex attention (CUDA); 0: skip it
# The attention of that part (e.g. flash_attention_2 where flash-attn is installed).
FLEX_ATTENTION = os.environ.get("ARC_TTFT_BENCH_FLEX_ATTENTION", "flex_attention")
PART_CAP = float(os.environ.get("ARC_TTFT_BENCH_PART_CAP", "2"))  # a part's calls end at this × its budget
PATH_BUDGET_S = {
    "static_decode": 20.0,
    "mixed_batch": 45.0,
    "mixed_static": 45.0,  # four calls of the mixed batch on the fixed-shape path: about the mixed part's time
    "mixed_compiled": 80.0,
    "compiled": 80.0,
    "train_compiled": 80.0,
    "train_flex": 60.0,
}

RESULT: dict[str, Any] = {"benchmark": "engine-gpu", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def left() -> float:
    return DEADLINE_S - (time.perf_counter() - T0)


def save() -> None:
    """Write what is known so far, so a run cut short still leaves its numbers."""
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        # Whole or not at all: a kill at the time limit may land in the middle of a write.
        path = os.path.join(out, "gpu-bench.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(RESULT, f, indent=2)
            f.write("\n")
        os.replace(path + ".tmp", path)


class Worker:
    """Client of bench/gpu/worker.py: one dispatch call per line, timed from encoding to decoding."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        ready = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not ready:
            raise RuntimeError("the worker exited before it was ready (see stderr)")

    def call(self, method: str, payload: Any = None, timeout: float | None = None) -> tuple[dict[str, Any], float]:
        """One dispatch call. ``timeout`` (seconds): past it the worker is stopped and :class:`TimeoutError` raised
        (a dispatch call cannot be interrupted; the worker is gone after that)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{method}: the worker is not running (exit status {self.proc.returncode})")
        start = time.perf_counter()
        self.proc.stdin.write(f"{method}\t{json.dumps(payload or {})}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        # One envelope per call and nothing after it, so the text buffer is empty here and select sees the pipe.
        if timeout is not None and not select.select([self.proc.stdout], [], [], max(0.0, timeout))[0]:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(
                f"{method}: no answer within {timeout:.0f} s (the part's cap or the deadline); the worker was stopped"
            )
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        ms = (time.perf_counter() - start) * 1000
        if not line:
            raise RuntimeError(f"the worker died during {method} (see stderr)")
        envelope = json.loads(line)
        if not envelope["ok"]:
            e = envelope["error"]
            raise RuntimeError(f"{method}: {e['type']}: {e['message']}\n{e['traceback']}")
        return envelope["result"], ms

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def environment() -> dict[str, Any]:
    import peft
    import torch
    import transformers

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = p.name
        env["gpu_memory_gib"] = round(p.total_memory / 2**30, 1)
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


def build_model(path: str, shape: dict[str, Any]) -> dict[str, Any]:
    """Random-weight Qwen2 of ``shape`` + the engine's char tokenizer, saved as a normal HF folder."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from arc_ttft.model import quiet_progress
    from arc_ttft.tiny import make_char_tokenizer

    quiet_progress()
    start = time.perf_counter()
    tokenizer = make_char_tokenizer()
    config = Qwen2Config(
        **shape,
        initializer_range=0.02,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    device = "cuda" if torch.cuda.is_available() and DEVICE != "cpu" else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).to(dtype)  # initialised on the GPU: seconds, not minutes
    model.generation_config = GenerationConfig(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    seconds = time.perf_counter() - start
    return {"n_params": n_params, "saved_dtype": str(dtype).removeprefix("torch."), "seconds": seconds}


def replay_task(w: Worker, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The calls fineTuneTask + predictTask made for one task; overhead = wall − train/generate compute."""
    wall = compute = reset = 0.0
    sizes: dict[str, int] = {}
    for c in calls:
        r, ms = w.call(c["method"], c["payload"])
        wall += ms
        if c["method"] in ("train", "generate"):
            compute += 1000 * r["seconds"]
            sizes[c["method"]] = len(json.dumps(c["payload"]))
        if c["method"] == "reset_adapter":
            reset += ms
    return {
        "overhead_ms": wall - compute,
        "reset_ms": reset,
        "round_trips_ms": wall,
        "compute_ms": compute,
        "calls": len(calls),
        "train_payload_bytes": sizes.get("train", 0),
        "generate_payload_bytes": sizes.get("generate", 0),
    }


def run_naive(
    model: str,
    samples: list[dict[str, str]],
    max_seq_len: int,
    tmp: str,
    *,
    device: str | None = None,
    lora: dict[str, Any] | None = None,
) -> dict[str, Any]:
    device = device or DEVICE
    lora = lora or LORA
    path = os.path.join(tmp, "naive-samples.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(samples, f)
    cmd = [
        sys.executable,
        os.path.join(ROOT, "bench", "naive_task.py"),
        model,
        "--samples",
        path,
        "--device",
        device,
        "--lora-r",
        str(lora["r"]),
        "--lora-alpha",
        str(lora["alpha"]),
        "--max-seq-len",
        str(max_seq_len),
    ]
    start = time.perf_counter()
    # Within the deadline: a naive process that hangs must not cost the JSON (TimeoutExpired, caught by the caller).
    p = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=max(1.0, left()))
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        raise RuntimeError(f"naive_task.py exited with {p.returncode}:\n{p.stderr[-3000:]}")
    inner = json.loads(p.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, **{k: inner[k] for k in ("imports_s", "load_s", "attach_s", "train_s", "device")}}


def load_payload(model: str) -> dict[str, Any]:
    """The engine's ``load_model`` payload for the bench model (the first load, a restart, the flex part)."""
    return {"model": model, "device": DEVICE, "dtype": "auto", "lora": LORA, "seed": 0}


# The end of the part running now (see part): its calls are cut there, so one slow part (a compile that takes
# minutes) cannot take the time of all the parts after it.
PART_END = [float("inf")]


def part_left() -> float:
    """Seconds the running part may still take: to its own cap or the deadline, whichever comes first."""
    return min(left(), PART_END[0] - time.perf_counter())


def part(name: str, budget: float, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one generation-path part unless less than half its ``budget`` is left, its calls cut at twice its budget
    or the deadline; a part cut short or failing is recorded (``skipped`` / ``error``), never fatal."""
    if left() < budget / 2:
        result = {"skipped": f"{left():.0f} s left before the deadline; {budget:.0f} s budgeted"}
    else:
        start = time.perf_counter()
        PART_END[0] = start + PART_CAP * budget
        try:
            result = fn()
        except TimeoutError as e:
            result = {"skipped": f"cut after {time.perf_counter() - start:.0f} s ({budget:.0f} s budgeted): {e}"}
        except Exception as e:  # noqa: BLE001 — recorded in the JSON, the run goes on
            result = {"error": f"{type(e).__name__}: {e}"[:4000]}
        finally:
            PART_END[0] = float("inf")
        result["part_seconds"] = time.perf_counter() - start
    log(f"{name}: {json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))})[:500]}")
    return result


def fresh_worker(old: Worker, model: str) -> Worker:
    """A new worker with the bench model loaded (within the deadline) in place of ``old``; if the load fails, the new
    process is stopped too and the error raised."""
    old.close()
    w = Worker()
    try:
        w.call("load_model", load_payload(model), timeout=left())
    except BaseException:
        w.proc.kill()
        w.proc.wait()
        raise
    return w


def measure_paths(
    held: list[Worker], tasks: list[dict[str, Any]], task: dict[str, Any], tmp: str, model: str
) -> None:
    """In this order, each within its cap and the deadline: the static decode vs the dynamic loop on ``task``'s
    views (eager); MIXED_K tasks in one mixed-adapter batch vs one call per task, then that batch on the
    fixed-shape path (eager); the compiled static decode; compiled vs eager training on ``task``'s samples; the mixed
    batch compiled; training under flex attention (bench/speed.py's measurements). The eager parts come first: they
    are cheap, and a compile that runs long cannot cost them. A part cut at its cap stops the worker; the next part
    gets a fresh one when there is time (the mixed batch's later parts need the first one's worker: they are skipped
    then). Each part records the compile counters and the CUDA memory peak of its own calls. ``held[0]`` is the
    worker, replaced when a part's cut stopped it (the caller closes the last one)."""
    worker = held
    restarts = [0]

    def bounded(method: str, payload: Any = None) -> tuple[dict[str, Any], float]:
        return worker[0].call(method, payload, timeout=part_left())

    def alive() -> bool:
        return worker[0].proc.poll() is None

    def restart() -> None:
        log("the worker was stopped; starting a fresh one")
        worker[0] = fresh_worker(worker[0], model)
        restarts[0] += 1

    reference: list[dict[str, Any]] = []
    mixed_state: dict[str, Any] = {}  # the mixed payload and the separate calls' outputs (measure_mixed)
    mixed_worker: list[int] = []  # restarts[0] when the mixed part ran: its kept slots live in that worker
    adapter = os.path.join(tmp, "static-decode-adapter")

    def static() -> dict[str, Any]:
        result, outputs = speed.measure_static(bounded, task["prompts"], task["stop"], tokens=GEN_TOKENS)
        reference.extend(outputs)
        # The mixed part trains and loads other adapters: the compiled part reloads this one to compare outputs.
        bounded("save_adapter", {"path": adapter})
        return {"task_id": task["task_id"], **result}

    def guarded(name: str, skips: list[tuple[bool, str]], note: str, fn: Callable[[], dict[str, Any]]) -> dict:
        """Part ``name`` (see :func:`part`), unless one of ``skips`` holds or there is no worker: then
        ``{"skipped": why}``."""
        why = next((why for cond, why in skips if cond), None)
        if why is None and not alive():
            if left() > 30 + PATH_BUDGET_S[name] / 2:
                try:
                    restart()
                except Exception as e:  # noqa: BLE001 — recorded; the later parts try again
                    why = f"restarting the worker failed: {type(e).__name__}: {e}"[:1000]
            else:
                why = "the worker was stopped and no time is left to start another"
        if why is not None:
            result = {"skipped": why}
            log(f"{name}: skipped: {why}")
        else:
            log(note)
            result = part(name, PATH_BUDGET_S[name], fn)
            if alive():
                try:  # this part's own figures: counters (cumulative) and the peak since the last part
                    status, _ = worker[0].call("status", {"reset_peak": True}, timeout=max(5.0, min(30.0, left())))
                    result["after"] = {"memory": status["memory"], "compile_counts": status.get("compile")}
                except Exception as e:  # noqa: BLE001
                    result["after"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        save()
        return result

    if alive():  # the peak of the stages before this point stays in RESULT["memory"]
        try:
            worker[0].call("status", {"reset_peak": True}, timeout=max(5.0, min(30.0, left())))
        except Exception as e:  # noqa: BLE001 — the parts still run (a stopped worker is replaced)
            log(f"status before the parts failed: {type(e).__name__}: {e}"[:500])
    RESULT["static_decode"] = st = guarded("static_decode", [], "static-cache decode vs the dynamic loop", static)

    merge = bool(RESULT.get("generate", {}).get("merge_pays"))

    def mixed() -> dict[str, Any]:
        mixed_worker.append(restarts[0])
        result, state = speed.measure_mixed(bounded, tasks, tmp, k=MIXED_K, tokens=GEN_TOKENS, merge=merge)
        mixed_state.update(state)
        return result

    def mixed_fixed(mode: str) -> dict[str, Any]:
        result = guarded(
            f"mixed_{mode}",
            [
                (MIXED_K <= 0, "ARC_TTFT_BENCH_MIXED_K=0"),
                ("mixed" not in mx, "the mixed part did not run"),
                (mixed_worker != [restarts[0]] or not alive(), "the mixed part's worker (its kept slots) is gone"),
                (mode == "compiled" and not COMPILE, "ARC_TTFT_BENCH_COMPILE=0"),
            ],
            f"the mixed batch on the fixed-shape path, {mode} (per-row adapters)",
            lambda: speed.measure_mixed_fixed(
                bounded, mixed_state, compile=mode == "compiled", separate_tokens_per_s=mx["separate"]["tokens_per_s"]
            ),
        )
        mx[mode] = result
        return result

    RESULT["mixed_batch"] = mx = guarded(
        "mixed_batch",
        [(MIXED_K <= 0, "ARC_TTFT_BENCH_MIXED_K=0")],
        f"{MIXED_K} tasks in one mixed-adapter batch vs {MIXED_K} calls",
        mixed,
    )
    mixed_fixed("static")

    def compiled() -> dict[str, Any]:
        bounded("load_adapter", {"path": adapter})  # the adapter the reference outputs came from
        return speed.measure_compiled(
            bounded,
            task["prompts"],
            task["stop"],
            tokens=GEN_TOKENS,
            reference=reference,
            dynamic_tokens_per_s=st["dynamic"]["tokens_per_s"],
        )

    st["compiled"] = guarded(
        "compiled",
        [(not COMPILE, "ARC_TTFT_BENCH_COMPILE=0"), ("static" not in st, "the static-cache part did not run")],
        "compiled static-cache decode (the first call compiles)",
        compiled,
    )
    train_failed = ("error" in RESULT["train"], "the train stage failed")
    RESULT["train_compiled"] = guarded(
        "train_compiled",
        [(not COMPILE_TRAIN, "ARC_TTFT_BENCH_COMPILE_TRAIN=0"), train_failed],
        "compiled training vs the fast eager path (the first call compiles)",
        lambda: speed.measure_train_compiled(
            bounded,
            task["samples"],
            task["max_seq_len"],
            batch=TRAIN_BATCH,
            steps=RESULT["train"]["fast"]["steps"],
        ),
    )
    mixed_fixed("compiled")

    def flex() -> dict[str, Any]:
        info, _ = bounded("load_model", {**load_payload(model), "attention": FLEX_ATTENTION})
        base = RESULT["train"]["fast"]
        run = speed._train_run(
            bounded, task["samples"], task["max_seq_len"], base["steps"], speed.fast_train(TRAIN_BATCH)
        )
        return {
            "attention": info["attention"],
            "load_seconds": info["seconds"],
            "fast": run,
            "tokens_per_s": run["tokens_per_s"],
            "ratio": run["tokens_per_s"] / base["tokens_per_s"],
            "rows_vs_default": [run["rows"], base["rows"]],
            "loss_first_vs_default": [run["loss_first"], base["loss_first"]],
        }

    # Last: it loads the model again, under flex attention.
    on_cpu = not RESULT["model"].get("device", "").startswith("cuda")
    RESULT["train_flex"] = guarded(
        "train_flex",
        [
            (not FLEX, "ARC_TTFT_BENCH_FLEX=0"),
            train_failed,
            (
                FLEX_ATTENTION == "flex_attention" and on_cpu,
                "flex attention trains on CUDA only (torch has no CPU backward)",
            ),
        ],
        f"fast training under {FLEX_ATTENTION} (rows of max_seq_len) vs the fast path under the default attention",
        flex,
    )
    RESULT["worker_restarts"] = restarts[0]


def more_naive(recorded: list[dict[str, Any]], naive: list[dict[str, Any]], model: str, tmp: str) -> None:
    """Naive processes (a fresh process per task: load, attach, train) for ``recorded`` tasks while fewer than
    N_NAIVE ran and the next would end before the deadline (judged by the last one's time)."""
    for t in recorded:
        last = naive[-1]["seconds"] if naive else 30.0
        if len(naive) >= N_NAIVE or left() < 1.5 * last + 10:
            return
        train = next(c["payload"] for c in t["calls"] if c["method"] == "train")
        try:
            run = run_naive(model, train["samples"], train["max_seq_len"], tmp)
        except Exception as e:  # noqa: BLE001 — recorded in the JSON; the parts after it still run
            RESULT.setdefault("naive_errors", []).append(f"{t['task_id']}: {type(e).__name__}: {e}"[:2000])
            log(f"naive  {t['task_id']}: failed: {RESULT['naive_errors'][-1][:300]}")
            save()
            return
        naive.append({"task_id": t["task_id"], **run})
        log(f"naive  {t['task_id']}: {run['seconds']:.2f} s from spawn to exit")
        save()


def naive_stats(naive: list[dict[str, Any]]) -> None:
    """The naive processes' figures in ``RESULT["overhead"]`` (median, runs, ratio to the engine's overhead)."""
    ov = RESULT["overhead"]
    median = statistics.median(r["seconds"] for r in naive) if naive else None
    ov["naive_s_median"] = median
    ov["naive_runs"] = naive
    ov["ratio"] = 1000 * median / ov["engine_overhead_ms_median"] if median is not None else None


def project(work: dict[str, Any], engine_ms: float) -> None:
    """The 100-task projection, on the fastest generation path measured so far."""
    if "error" in RESULT["train"] or "error" in RESULT["generate"]:
        return
    best = speed.best_generation(RESULT["generate"], RESULT.get("static_decode"), RESULT.get("mixed_batch"))
    RESULT["generate_best"] = best
    RESULT["projection"] = speed.project(
        work,
        RESULT["train"],
        RESULT["generate"],
        engine_ms,
        RESULT["engine_start_s"],
        best,
        RESULT.get("train_compiled"),
    )
    p = RESULT["projection"]
    log(
        f"100-task run, projected: naive {p['naive']['minutes']:.1f}, fast {p['fast']['minutes']:.1f} min "
        f"(generation on the {best['path']} path)"
    )


def main() -> None:
    RESULT["environment"] = environment()
    RESULT["shape"] = {"name": SHAPE, **SHAPES[SHAPE], "tokenizer": "arc_ttft char tokenizer (1 token per char)"}
    RESULT["lora"] = LORA
    log(f"environment: {json.dumps(RESULT['environment'])}")
    with tempfile.TemporaryDirectory(prefix="arc-ttft-gpu-bench-") as tmp:
        model = os.path.join(tmp, "model")
        log(f"building the {SHAPE} model")
        RESULT["model"] = build_model(model, SHAPES[SHAPE])
        log(f"model: {RESULT['model']}")
        save()

        start = time.perf_counter()
        w = Worker()
        info, _ = w.call("load_model", load_payload(model))
        RESULT["engine_start_s"] = time.perf_counter() - start
        RESULT["model"].update({k: info[k] for k in ("device", "dtype", "attention", "n_trainable", "vocab_size")})
        log(f"engine started in {RESULT['engine_start_s']:.2f} s on {info['device']} ({info['dtype']})")
        try:
            recorded_tasks = speed.load_recorded(PAYLOADS)
            work = speed.workload(recorded_tasks, lambda texts: w.call("count_tokens", {"texts": texts})[0]["counts"])
            RESULT["workload"] = work
            train_task = next(t for t in recorded_tasks if t["task_id"] == TRAIN_TASK)
            log(f"train throughput, naive vs fast (task {TRAIN_TASK})")
            # One failing stage (e.g. out of memory on the fast path) must not cost the others' numbers.
            try:
                RESULT["train"] = speed.measure_train(
                    w.call,
                    train_task["samples"],
                    train_task["max_seq_len"],
                    batch=TRAIN_BATCH,
                    naive_steps=TRAIN_STEPS,
                    # Enough steps that the fast run is not a second or two (the training ratio rests on it).
                    fast_steps=max(8, TRAIN_STEPS * 2 // TRAIN_BATCH),
                )
                RESULT["train"]["task_id"] = TRAIN_TASK
                t = RESULT["train"]
                log(f"train: naive {t['naive']['tokens_per_s']:.0f}, fast {t['fast']['tokens_per_s']:.0f} tokens/s")
            except Exception as e:  # noqa: BLE001 — recorded in the JSON, the run goes on
                RESULT["train"] = {"error": f"{type(e).__name__}: {e}"[:4000]}
                log(f"train stage failed: {RESULT['train']['error'][:500]}")
            save()
            log("generation throughput, naive vs fast")
            try:
                RESULT["generate"] = speed.measure_generate(
                    w.call,
                    train_task["prompts"],
                    train_task["stop"],
                    tokens=GEN_TOKENS,
                    naive_prompts=GEN_NAIVE_PROMPTS,
                    scale=GEN_SCALE,
                )
                g = RESULT["generate"]
                log(
                    f"generate: naive {g['naive']['tokens_per_s']:.1f}, fast {g['fast']['tokens_per_s']:.1f}, "
                    f"merged {g['fast_merged']['tokens_per_s']:.1f} tokens/s"
                )
            except Exception as e:  # noqa: BLE001 — recorded in the JSON, the run goes on
                RESULT["generate"] = {"error": f"{type(e).__name__}: {e}"[:4000]}
                log(f"generate stage failed: {RESULT['generate']['error'][:500]}")
            save()

            with gzip.open(PAYLOADS, "rt", encoding="utf-8") as f:
                recorded = json.load(f)
            naive: list[dict[str, Any]] = []
            engine_ms: float | None = None
            # Like the stages above: a failure here is recorded (with what was measured before it), and the
            # generation parts still run.
            RESULT["overhead"] = ov = {"payloads": recorded["source"]}
            try:
                pings = [w.call("ping")[1] for _ in range(20)]
                ov["ping_ms_median"] = statistics.median(pings)
                w.call("reset_adapter", {"seed": None})
                tasks: list[dict[str, Any]] = []
                ov["tasks"] = tasks
                for t in recorded["tasks"][:N_TASKS]:
                    row = {"task_id": t["task_id"], **replay_task(w, t["calls"])}
                    tasks.append(row)
                    log(f"engine {t['task_id']}: overhead {row['overhead_ms']:.1f} ms (reset {row['reset_ms']:.1f} ms)")
                ov["engine_overhead_ms_median"] = statistics.median(r["overhead_ms"] for r in tasks)
                ov["reset_ms_median"] = statistics.median(r["reset_ms"] for r in tasks)
                ov["note"] = "engine = arc_ttft.entry.dispatch in a long-lived process over pipes (no Node hop)"
                engine_ms = ov["engine_overhead_ms_median"]
                # One naive process now; the others only with the time the later parts leave (they come first).
                more_naive(recorded["tasks"][:1], naive, model, tmp)
                naive_stats(naive)
                project(work, engine_ms)
            except Exception as e:  # noqa: BLE001 — recorded in the JSON, the run goes on
                ov["error"] = f"{type(e).__name__}: {e}"[:4000]
                log(f"overhead stage failed: {ov['error'][:500]}")
            save()
            try:
                RESULT["memory"] = w.call("status")[0]["memory"]
            except Exception as e:  # noqa: BLE001
                RESULT["memory"] = {"error": f"{type(e).__name__}: {e}"[:1000]}
            if w.proc.poll() is not None and left() > 30:  # the worker died: a fresh one for the parts
                try:
                    w = fresh_worker(w, model)
                except Exception as e:  # noqa: BLE001 — the parts then try again, or record that it is gone
                    log(f"restarting the worker failed: {type(e).__name__}: {e}"[:500])
            held = [w]
            try:
                measure_paths(held, recorded_tasks, train_task, tmp, model)
            finally:
                w = held[0]  # the worker the parts left (closed below)
            if w.proc.poll() is None:
                status = w.call("status")[0]
                # Of the last worker only (after a restart, the earlier ones' are in each part's "after"): its
                # memory since the last part, and its graphs compiled, graph breaks, and CUDA-graph captures
                # inductor skipped (a compiled decode without CUDA graphs would explain a poor compiled ratio).
                RESULT["memory_after_paths"] = status["memory"]
                RESULT["compile_counts"] = status.get("compile")
            more_naive(recorded["tasks"][1:N_TASKS], naive, model, tmp)
            if engine_ms is not None:
                naive_stats(naive)
                project(work, engine_ms)
        finally:
            w.close()
    RESULT["total_s"] = time.perf_counter() - T0
    save()
    print(json.dumps(RESULT), flush=True)


if __name__ == "__main__":
    try:
        main()
    except BaseException as e:
        # Whatever was measured stays in the JSON, with what ended the run (stdout gets the JSON line too).
        RESULT["error"] = f"{type(e).__name__}: {e}"[:4000]
        RESULT["total_s"] = time.perf_counter() - T0
        save()
        print(json.dumps(RESULT), flush=True)
        raise
