"""The engine's one entry point for the TypeScript bridge: ``dispatch(method, payload_json) -> str``.

One engine per process: module-level state keeps the base model, tokenizer and LoRA adapter loaded across calls.
Every call returns a JSON string, never raises (except ``KeyboardInterrupt``/``SystemExit``, which must still stop
the process)::

    {"ok": true,  "result": {...}}
    {"ok": false, "error": {"type": "PayloadError", "message": "train.steps: is required", "traceback": "..."}}

Payload fields are snake_case; ``null`` means "use the default"; unknown fields are a ``PayloadError`` naming them.
Non-finite floats (a diverged loss) come back as ``null``.

=============== =================================================================== ====================================
method          payload (defaults)                                                  result
=============== =================================================================== ====================================
ping            {}                                                                  pid, python, torch, transformers,
                                                                                    peft, cuda_available, device_count,
                                                                                    loaded
load_model      model (path or Hub id), dtype ('auto'|'float32'|'bfloat16'|         model_type, n_params, n_trainable,
                'float16'; 'auto'), device ('auto'|'cpu'|'cuda'|'cuda:N';           vocab_size, full_vocab_size,
                'auto'), attention (null = transformers' choice | 'sdpa'|'eager'|  reduced_vocab (bool), device, dtype,
                'flash_attention_2'|'flash_attention_3'|'flex_attention'), lora    attention, max_position_embeddings,
                {r (16), alpha (32), dropout (0), target_modules ('all-linear' or   eos_token, pad_token, lora {...},
                [names]), modules_to_save ([names]|null)}, adapter_init (adapter    seconds, backend, backend_info {...}
                folder|null), seed (0),
                gradient_checkpointing (false), reduce_vocab (null | {keep_texts
                ([str]), keep_chars (str), skip_if_vocab_at_most (0)}; see
                vocab.py), backend ('transformers'|'vllm'; 'transformers'),
                vllm (null | {gpu_memory_utilization (null = half the GPU, less
                when less is free), max_model_len (null = min(8192, max
                positions)), enforce_eager (false), max_loras (1),
                prefix_caching (null = vLLM's)}; see vllm_backend.py)
reset_adapter   seed (null = the load seed)                                         seconds
train           samples [{prompt, answer}], steps, batch_size (1), grad_accum (1),  steps, losses [per step], tokens,
                lr (1e-4), warmup_ratio (0.1), weight_decay (0), max_seq_len        answer_tokens, samples, skipped,
                (8192), max_grad_norm (1.0; 0 = off), seed (0), progress_every      seconds, step_seconds
                (0 = off; else a stderr line every N steps, see train.py),
                max_seconds (null; stop early after this long, ``steps`` says how  packed, rows, fused_optimizer,
                many ran), pack (false; pack each step's samples into rows,         autocast, compiled,
                batch_size rows per forward pass, see train.py), pack_len (null:    compile_seconds
                see train.pack_capacity), fused_optimizer (null = on CUDA),
                autocast (null = bfloat16 on CUDA for bfloat16 weights), compile
                (false; with pack: torch.compile the forward pass, see train.py)
generate        prompts [str], max_new_tokens (int, or [int] per prompt), do_sample   outputs [{text, n_tokens,
                (false), temperature (1), top_p (1), seed (0), batch_size (null =   mean_logprob, finish_reason}],
                all), stop ([str]), merge (false; LoRA merged into the base         tokens, seconds
                weights for the call, restored bit-exactly after, see
                generate.py), adapters (null | [slot|null] per prompt: a kept
                adapter, null = the current one; one batch mixes them, see
                multi_lora.py; merge is then off), static_cache (false;
                fixed-shape steps over a bucketed static KV cache, see
                static_decode.py), compile (false; with static_cache:
                torch.compile the step, CUDA graphs on CUDA)
keep_adapter    slot (0-63): copy the current adapter into that slot for a later    slot, kept, seconds
                mixed ``generate`` (several tasks in one batch)
count_tokens    texts [str]                                                         counts [int]
save_adapter    path                                                                path (absolute), files
load_adapter    path                                                                {}
make_tiny_model path, hidden_size (64), num_layers (2), num_heads (4),              path, n_params
                num_kv_heads (=num_heads), intermediate_size (4×hidden),
                max_position_embeddings (8192), initializer_range (0.1), seed (0)
status          reset_peak (false; true: the CUDA peak starts over after this     loaded, model, device, dtype,
                reading)                                                            adapter_init, lora, n_params,
                                                                                    n_trainable, memory {rss_bytes,
                                                                                    cuda_*_bytes}, backend,
                                                                                    compile {graphs, graph_breaks,
                                                                                    cudagraph_skips} or null
unload          {}                                                                  unloaded (bool)
debug_sleep     seconds                                                             slept
debug_raise     message                                                             (raises ValueError)
debug_crash     code (1)                                                            (the process exits with ``code``)
=============== =================================================================== ====================================

Notes. ``load_model`` replaces any loaded model. With ``reduce_vocab`` the embedding and output layer keep only the
tokens of ``keep_texts`` (and of their characters) and every token made only of ``keep_chars`` characters, before
LoRA is attached; ids, ``vocab_size`` and every later call use the reduced vocabulary, a text needing another token
fails with ``VocabularyError``, and saved adapters carry a ``reduced_vocab.json`` (see :mod:`arc_ttft.vocab`).
With ``adapter_init`` the adapter and its LoRA settings come from that PEFT folder (``lora`` is ignored) and
``reset_adapter`` always restores exactly it. ``generate`` goes through the load's ``backend``
(:mod:`arc_ttft.backend`); training always runs on the PEFT model. With ``vllm`` (no ``reduce_vocab``, no
``modules_to_save``), each adapter version is saved to a temporary folder on the first ``generate`` after it changed
and handed to vLLM as a new ``LoRARequest``. Token counts: prompts and
answers are tokenised as raw text without special tokens; a training sample is ``prompt + answer + 1`` (EOS) tokens
and is skipped (counted in ``skipped``) when longer than ``max_seq_len``. ``mean_logprob`` is taken under the
model's own distribution (temperature 1, no top-p), over the generated tokens including the final EOS.

Error types: ``UnknownMethodError``, ``PayloadError``, ``ModelNotFoundError``, ``NotLoadedError``, ``AdapterError``,
``DeviceError``, ``NoTrainableSamplesError``, ``TrainingDivergedError``, ``AttentionUnavailableError``,
``CompileError``, ``BackendUnavailableError`` (see :mod:`arc_ttft.errors`),
``VocabularyError`` (:mod:`arc_ttft.vocab`), or whatever Python raised (``OutOfMemoryError``, ``ValueError``, ...).

On import a watchdog thread starts: when the parent process (the Node host) dies, this process exits, so no orphan
keeps holding memory or a GPU. ``ARC_TTFT_WATCHDOG=0`` turns it off, ``ARC_TTFT_WATCHDOG=poll`` keeps only the
portable getppid() poll (no PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import NotLoadedError, PayloadError, UnknownMethodError
from .payload import Fields

__all__ = ["dispatch", "METHODS"]


# --------------------------------------------------------------------------------------------------- watchdog


def _start_watchdog(interval: float = 0.5) -> None:
    """Exit when the parent dies: PR_SET_PDEATHSIG on Linux (immediate), plus a getppid() poll (portable)."""
    mode = os.environ.get("ARC_TTFT_WATCHDOG", "1")
    if mode == "0":
        return
    parent = os.getppid()
    if sys.platform.startswith("linux") and mode != "poll":
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # best effort: the poll below still works

    def watch() -> None:
        while True:
            if os.getppid() != parent:  # re-parented: the host is gone
                os._exit(1)
            time.sleep(interval)

    # Never touches the JS side: pythonia serves calls on the main thread only.
    threading.Thread(target=watch, name="arc-ttft-watchdog", daemon=True).start()


_start_watchdog()


# --------------------------------------------------------------------------------------------------- state


@dataclass
class _Engine:
    model: Any = None  # the PEFT-wrapped model
    tokenizer: Any = None
    adapter: Any = None  # lora.AdapterState
    vocab: Any = None  # vocab.Reduction, when the vocabulary was reduced
    device: Any = None
    dtype: Any = None
    path: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    backend: Any = None  # backend.Backend: who generates
    adapter_version: int = 0  # bumped whenever the adapter's weights change
    exported: Any = None  # backend.AdapterRef of the folder holding the current version (vllm)
    export_dir: str | None = None  # temporary folder of exported adapter versions
    kept: dict[int, Any] = field(default_factory=dict)  # slot -> backend.AdapterRef (keep_adapter)


_engine = _Engine()


def _loaded() -> _Engine:
    if _engine.model is None:
        raise NotLoadedError("no model is loaded: call load_model first")
    return _engine


def _free() -> bool:
    had = _engine.model is not None
    if had:  # static caches and compiled graphs hold memory: free them now, not at garbage collection
        from . import compiling

        compiling.release(_engine.model)
    if _engine.backend is not None:
        _engine.backend.close()
    if _engine.export_dir is not None:
        import shutil

        shutil.rmtree(_engine.export_dir, ignore_errors=True)
    _engine.backend = _engine.exported = _engine.export_dir = None
    _engine.kept = {}
    _engine.model = _engine.tokenizer = _engine.adapter = _engine.vocab = None
    _engine.path = None
    _engine.info = {}
    gc.collect()
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return had


# --------------------------------------------------------------------------------------------------- handlers


def _ping(f: Fields) -> dict[str, Any]:
    f.finish()
    import peft
    import torch
    import transformers

    return {
        "pid": os.getpid(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count(),
        "loaded": _engine.model is not None,
    }


def _load_model(f: Fields) -> dict[str, Any]:
    path = f.str("model")
    dtype_name = f.str("dtype", "auto", choices=("auto", "float32", "bfloat16", "float16"))
    device_name = f.str("device", "auto")
    from .model import ATTENTION

    attention = f.str("attention", None, choices=ATTENTION)
    lo = f.obj("lora")
    r = lo.int("r", 16, min=1)
    alpha = lo.float("alpha", 32.0, min=0.0)
    alpha = int(alpha) if alpha.is_integer() else alpha  # adapter_config.json conventionally holds an int
    dropout = lo.float("dropout", 0.0, min=0.0, max=1.0)
    if dropout >= 1.0:
        raise PayloadError(lo.path("dropout"), "must be below 1 (1 drops every input: nothing trains)")
    targets = lo.raw("target_modules", "all-linear")
    if isinstance(targets, list):
        targets = lo.str_list("target_modules", non_empty=True)
    elif not isinstance(targets, str):
        raise PayloadError(lo.path("target_modules"), "expected 'all-linear' or an array of module names")
    modules_to_save = lo.str_list("modules_to_save", None)
    lo.finish()
    adapter_init = f.str("adapter_init", None)
    seed = f.seed("seed", 0)
    checkpointing = f.bool("gradient_checkpointing", False)
    vocab_spec = _vocab_spec(f)
    backend_name = f.str("backend", "transformers", choices=("transformers", "vllm"))
    backend_options = _vllm_options(f)
    f.finish()
    if backend_name == "vllm" and vocab_spec is not None:
        raise PayloadError(f.path("reduce_vocab"), "backend 'vllm' loads the model folder as it is: use null")
    if backend_name == "vllm" and modules_to_save:
        raise PayloadError(lo.path("modules_to_save"), "backend 'vllm' serves LoRA weights only: use null")
    # Refused before anything loads; an adapter_init folder is checked by the backend (unsupported_lora).
    if backend_name == "vllm" and isinstance(targets, list):
        from .vllm_backend import HEAD_MODULES

        head = [t for t in targets if t.split(".")[-1] in HEAD_MODULES]
        if head:
            raise PayloadError(
                lo.path("target_modules"), f"backend 'vllm' serves LoRA on linear layers only, not on {head}"
            )
    if backend_name != "vllm" and backend_options:
        raise PayloadError(f.path("vllm"), "only for backend 'vllm'")
    # Whole-module copies take the model's dtype; in float16 AdamW's eps rounds to 0 and they turn NaN at step 2.
    if dtype_name == "float16" and modules_to_save:
        raise PayloadError(
            lo.path("modules_to_save"),
            "with dtype 'float16' the copies train in float16 and turn NaN: use bfloat16 or float32",
        )

    from . import lora, vocab
    from . import model as model_mod
    from .backend import BackendContext, get_backend

    start = time.perf_counter()
    backend = get_backend(backend_name)  # a missing vLLM fails here, before anything is loaded or freed
    device = model_mod.resolve_device(device_name)
    dtype = model_mod.resolve_dtype(dtype_name, device)
    source = model_mod.check_model_source(path)  # before _free(): a mistyped path keeps the loaded model
    _free()
    base, tokenizer = model_mod.load_base(path, dtype, device, attention)
    full_vocab_size = len(tokenizer)
    reduction = None
    if vocab_spec is not None:
        # Before LoRA: adapters and modules_to_save copies must be built on the small matrices.
        tokenizer, reduction = vocab.reduce_vocab(base, tokenizer, vocab_spec)
    if adapter_init is not None:
        vocab.check_adapter(adapter_init, reduction)
    n_params = sum(p.numel() for p in base.parameters())
    if checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    peft_model, state = lora.attach_lora(
        base,
        r=r,
        alpha=alpha,
        dropout=dropout,
        target_modules=targets,
        modules_to_save=modules_to_save,
        adapter_init=adapter_init,
        seed=seed,
    )
    peft_model.eval()
    config = base.config
    info = {
        "model_type": config.model_type,
        "n_params": n_params,
        "n_trainable": sum(p.numel() for p in peft_model.parameters() if p.requires_grad),
        "vocab_size": len(tokenizer),
        "full_vocab_size": full_vocab_size,
        "reduced_vocab": reduction is not None,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "attention": getattr(config, "_attn_implementation", None),
        "max_position_embeddings": model_mod.max_positions(config),
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "lora": state.config,
    }
    max_positions = info["max_position_embeddings"] or 8192
    backend_info = backend.load(
        BackendContext(
            model_path=source,
            model=peft_model,
            tokenizer=tokenizer,
            device=device,
            dtype=dtype,
            lora=state.config,
            max_model_len=backend_options.pop("max_model_len", None) or min(8192, max_positions),
            seed=seed,
            options=backend_options,
        )
    )
    info = {**info, "backend": backend_name, "backend_info": backend_info}
    _engine.model, _engine.tokenizer, _engine.adapter = peft_model, tokenizer, state
    _engine.vocab = reduction
    _engine.device, _engine.dtype, _engine.path = device, dtype, path
    _engine.info = {**info, "adapter_init": adapter_init}
    _engine.backend, _engine.adapter_version = backend, 0
    return {**info, "seconds": time.perf_counter() - start}


def _vllm_options(f: Fields) -> dict[str, Any]:
    """``load_model.vllm``: settings of the vLLM backend (``{}`` when null)."""
    raw = f.raw("vllm", None)
    if raw is None:
        return {}
    v = Fields(raw, f.path("vllm"))
    options = {
        "gpu_memory_utilization": v.float("gpu_memory_utilization", None, min=0.01, max=1.0),
        "max_model_len": v.int("max_model_len", None, min=2),
        "enforce_eager": v.bool("enforce_eager", False),
        "max_loras": v.int("max_loras", 1, min=1),
        "prefix_caching": v.bool("prefix_caching", None),
    }
    v.finish()
    return options


def _changed(e: _Engine) -> None:
    """The adapter's weights changed: a backend that serves saved copies needs a new one."""
    e.adapter_version += 1


def _adapter_ref(e: _Engine) -> Any:
    """The current adapter as the backend takes it: the live one, or (vllm) a saved folder with a fresh id."""
    from .backend import AdapterRef

    version = e.adapter_version + 1  # ids must be > 0
    if not e.backend.needs_adapter_folder:
        return AdapterRef(name=f"arc-ttft-{version}", id=version)
    if e.exported is not None and e.exported.id == version:
        return e.exported
    import shutil
    import tempfile

    from . import lora

    if e.export_dir is None:
        e.export_dir = tempfile.mkdtemp(prefix="arc-ttft-adapters-")
    ref = AdapterRef(name=f"arc-ttft-{version}", id=version, path=os.path.join(e.export_dir, f"v{version}"))
    lora.save_adapter(e.model, ref.path)
    old, e.exported = e.exported, ref
    if old is not None:
        e.backend.release(old)
        shutil.rmtree(old.path, ignore_errors=True)
    return ref


def _vocab_spec(f: Fields) -> Any:
    """``load_model.reduce_vocab``: ``null`` (keep the vocabulary) or ``{keep_texts, keep_chars, ...}``."""
    raw = f.raw("reduce_vocab", None)
    if raw is None:
        return None
    from .vocab import VocabSpec

    rv = Fields(raw, f.path("reduce_vocab"))
    keep_texts = rv.str_list("keep_texts", [])
    keep_chars = rv.str("keep_chars", "")
    skip = rv.int("skip_if_vocab_at_most", 0, min=0)
    rv.finish()
    if not keep_chars and not any(keep_texts):
        raise PayloadError(f.path("reduce_vocab"), "give keep_texts or keep_chars: nothing would be kept")
    return VocabSpec(keep_texts=tuple(keep_texts), keep_chars=keep_chars, skip_if_vocab_at_most=skip)


def _reset_adapter(f: Fields) -> dict[str, Any]:
    seed = f.seed("seed", None)
    f.finish()
    from . import lora

    e = _loaded()
    start = time.perf_counter()
    _changed(e)
    lora.reset_adapter(e.model, e.adapter, seed)
    return {"seconds": time.perf_counter() - start}


def _train(f: Fields) -> dict[str, Any]:
    raw = f.list("samples")
    samples = []
    for i, item in enumerate(raw):
        s = Fields(item, f"{f.path('samples')}[{i}]")
        samples.append({"prompt": s.str("prompt"), "answer": s.str("answer")})
        s.finish()
    from .train import TrainConfig, train

    max_grad_norm = f.float("max_grad_norm", 1.0, min=0.0)
    cfg = TrainConfig(
        steps=f.int("steps", min=1),
        # Far past any use; bounds on the work a mistyped value would start (1e12 hung building one step's list).
        batch_size=f.int("batch_size", 1, min=1, max=MAX_BATCH),
        grad_accum=f.int("grad_accum", 1, min=1, max=MAX_BATCH),
        lr=f.float("lr", 1e-4, min=0.0, max=1e30),  # past float32's range the optimizer fails raw
        warmup_ratio=f.float("warmup_ratio", 0.1, min=0.0, max=1.0),
        weight_decay=f.float("weight_decay", 0.0, min=0.0),
        max_seq_len=f.int("max_seq_len", 8192, min=2),
        max_grad_norm=max_grad_norm or None,  # 0 turns clipping off
        seed=f.seed("seed", 0),
        progress_every=f.int("progress_every", 0, min=0),
        max_seconds=f.float("max_seconds", None, min=0.0),
        pack=f.bool("pack", False),
        pack_len=f.int("pack_len", None, min=2),
        fused_optimizer=f.bool("fused_optimizer", None),
        autocast=f.bool("autocast", None),
        compile=f.bool("compile", False),
    )
    if cfg.batch_size * cfg.grad_accum > MAX_BATCH:
        raise PayloadError(
            f.path("grad_accum"), f"batch_size × grad_accum is {cfg.batch_size * cfg.grad_accum}: must be <= {MAX_BATCH}"
        )
    f.finish()
    e = _loaded()
    _changed(e)
    return train(e.model, e.tokenizer, samples, cfg)


# Bounds of counts that size work or memory (a 30×30 answer is about 1,000 tokens; a static KV cache is allocated for
# the whole limit).
MAX_NEW_TOKENS = 65_536
MAX_BATCH = 65_536


def _generate(f: Fields) -> dict[str, Any]:
    prompts = f.str_list("prompts", non_empty=True)
    from .generate import GenerateConfig

    each = _token_limits(f, len(prompts))
    cfg = GenerateConfig(
        max_new_tokens=max(each) if isinstance(each, tuple) else each,
        do_sample=f.bool("do_sample", False),
        temperature=f.float("temperature", 1.0, min=1e-6),
        top_p=f.float("top_p", 1.0, min=1e-6, max=1.0),
        seed=f.seed("seed", 0),
        batch_size=f.int("batch_size", None, min=1, max=MAX_BATCH),
        stop=tuple(f.str_list("stop", [])),
        merge=f.bool("merge", False),
        max_new_tokens_each=each if isinstance(each, tuple) else None,
        static_cache=f.bool("static_cache", False),
        compile=f.bool("compile", False),
    )
    if cfg.compile and not cfg.static_cache:
        raise PayloadError(f.path("compile"), "compiles the static-cache step: set static_cache too")
    if any(s == "" for s in cfg.stop):
        raise PayloadError(f.path("stop"), "stop strings must not be empty")
    from .lora import MAX_SLOTS

    # null, or one entry per prompt: a kept slot, or null for the current adapter
    adapters = f.int_each("adapters", len(prompts), min=0, max=MAX_SLOTS - 1, nullable=True)
    f.finish()
    e = _loaded()
    live = _adapter_ref(e)
    if adapters is None:
        return e.backend.generate(prompts, cfg, live).as_json()
    refs = []
    for i, slot in enumerate(adapters):
        if slot is not None and slot not in e.kept:
            raise PayloadError(f"generate.adapters[{i}]", f"slot {slot} holds no adapter: call keep_adapter first")
        refs.append(live if slot is None else e.kept[slot])
    return e.backend.generate_mixed(prompts, cfg, refs).as_json()


def _token_limits(f: Fields, n: int) -> int | tuple[int, ...]:
    """``generate.max_new_tokens``: one limit for all prompts, or an array with one per prompt."""
    if not isinstance(f.raw("max_new_tokens"), list):
        return f.int("max_new_tokens", min=1, max=MAX_NEW_TOKENS)
    return tuple(f.int_each("max_new_tokens", n, min=1, max=MAX_NEW_TOKENS))


def _keep_adapter(f: Fields) -> dict[str, Any]:
    from .lora import MAX_SLOTS

    slot = f.int("slot", min=0, max=MAX_SLOTS - 1)
    f.finish()
    e = _loaded()
    start = time.perf_counter()
    ref = e.backend.keep(_adapter_ref(e), slot)
    old = e.kept.get(slot)
    e.kept[slot] = ref
    if old is not None and old.path is not None and old.path != ref.path:
        import shutil

        e.backend.release(old)
        shutil.rmtree(old.path, ignore_errors=True)
    return {"slot": slot, "kept": len(e.kept), "seconds": time.perf_counter() - start}


def _count_tokens(f: Fields) -> dict[str, Any]:
    texts = f.str_list("texts")
    f.finish()
    from .tokens import count_tokens

    return {"counts": count_tokens(_loaded().tokenizer, texts)}


def _adapter_path(f: Fields) -> str:
    path = f.str("path")
    if path.strip() == "":
        raise PayloadError(f.path("path"), "must not be empty")
    return path


def _save_adapter(f: Fields) -> dict[str, Any]:
    path = _adapter_path(f)
    f.finish()
    from . import vocab

    e = _loaded()
    out = vocab.save_adapter(e.model, path, e.vocab, e.tokenizer)  # + reduced_vocab.json when reduced
    return {"path": out, "files": sorted(os.listdir(out))}


def _load_adapter(f: Fields) -> dict[str, Any]:
    path = _adapter_path(f)
    f.finish()
    from . import lora, vocab

    e = _loaded()
    vocab.check_adapter(path, e.vocab)
    _changed(e)
    lora.load_adapter(e.model, path)
    return {}


def _make_tiny_model(f: Fields) -> dict[str, Any]:
    kwargs = {
        "hidden_size": f.int("hidden_size", 64, min=8),
        "num_layers": f.int("num_layers", 2, min=1),
        "num_heads": f.int("num_heads", 4, min=1),
        "num_kv_heads": f.int("num_kv_heads", None, min=1),
        "intermediate_size": f.int("intermediate_size", None, min=1),
        "max_position_embeddings": f.int("max_position_embeddings", 8192, min=16),
        "initializer_range": f.float("initializer_range", 0.1, min=0.0),
        "seed": f.seed("seed", 0),
    }
    path = f.str("path")
    f.finish()
    if kwargs["hidden_size"] % kwargs["num_heads"]:
        raise PayloadError(f.path("num_heads"), f"must divide hidden_size {kwargs['hidden_size']}")
    if (kwargs["hidden_size"] // kwargs["num_heads"]) % 2:
        raise PayloadError(f.path("num_heads"), "hidden_size / num_heads must be even (rotary embeddings)")
    if kwargs["num_kv_heads"] is not None and kwargs["num_heads"] % kwargs["num_kv_heads"]:
        raise PayloadError(f.path("num_kv_heads"), f"must divide num_heads {kwargs['num_heads']}")
    from .tiny import make_tiny_model

    return make_tiny_model(path, **kwargs)


def _status(f: Fields) -> dict[str, Any]:
    reset_peak = f.bool("reset_peak", False)
    f.finish()
    from . import compiling
    from .model import memory_info

    e = _engine
    memory = memory_info(e.device if e.model is not None else None)
    if reset_peak and e.model is not None and e.device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(e.device)  # the next reading's peak is that of what runs in between
    return {
        "loaded": e.model is not None,
        "model": e.path,
        "device": str(e.device) if e.model is not None else None,
        "dtype": e.info.get("dtype"),
        "adapter_init": e.info.get("adapter_init"),
        "lora": e.info.get("lora"),
        "n_params": e.info.get("n_params"),
        "n_trainable": e.info.get("n_trainable"),
        "memory": memory,
        "backend": e.info.get("backend"),
        "compile": compiling.counts(),
    }


def _unload(f: Fields) -> dict[str, Any]:
    f.finish()
    return {"unloaded": _free()}


def _debug_sleep(f: Fields) -> dict[str, Any]:
    seconds = f.float("seconds", min=0.0)
    f.finish()
    time.sleep(seconds)
    return {"slept": seconds}


def _debug_raise(f: Fields) -> dict[str, Any]:
    message = f.str("message", "debug_raise")
    f.finish()
    raise ValueError(message)


def _debug_crash(f: Fields) -> dict[str, Any]:
    code = f.int("code", 1, min=0, max=255)
    f.finish()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


METHODS: dict[str, Callable[[Fields], dict[str, Any]]] = {
    "ping": _ping,
    "load_model": _load_model,
    "reset_adapter": _reset_adapter,
    "train": _train,
    "generate": _generate,
    "count_tokens": _count_tokens,
    "save_adapter": _save_adapter,
    "keep_adapter": _keep_adapter,
    "load_adapter": _load_adapter,
    "make_tiny_model": _make_tiny_model,
    "status": _status,
    "unload": _unload,
    "debug_sleep": _debug_sleep,
    "debug_raise": _debug_raise,
    "debug_crash": _debug_crash,
}


# --------------------------------------------------------------------------------------------------- dispatch


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity (JSON.parse rejects them): map non-finite floats to null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _error(exc: BaseException) -> str:
    if type(exc).__name__ == "OutOfMemoryError":
        gc.collect()  # drop the failed step's tensors so the next call can run
        if "torch" in sys.modules:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    error = {
        "type": type(exc).__name__,
        "message": str(exc) or repr(exc),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }
    return json.dumps({"ok": False, "error": error})


def dispatch(method: str, payload_json: str | None = "{}") -> str:
    """Run one engine method on a JSON payload; return the JSON envelope (see the module docstring)."""
    try:
        handler = METHODS.get(method) if isinstance(method, str) else None
        if handler is None:
            raise UnknownMethodError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
        if payload_json is None or payload_json == "":
            payload: Any = {}
        elif isinstance(payload_json, str):
            try:
                payload = json.loads(payload_json)
            except json.JSONDecodeError as e:
                raise PayloadError(method, f"payload is not valid JSON: {e}") from e
        else:
            raise PayloadError(method, f"payload must be a JSON string, got {type(payload_json).__name__}")
        result = handler(Fields(payload, method))
        return json.dumps({"ok": True, "result": _finite(result)}, allow_nan=False)
    except (KeyboardInterrupt, SystemExit):
        raise  # Ctrl-C / exit must still end the process
    except BaseException as exc:  # noqa: BLE001 — everything else becomes data for the bridge
        try:
            return _error(exc)
        except BaseException:  # noqa: BLE001 — e.g. an exception whose __str__ raises
            return json.dumps(
                {"ok": False, "error": {"type": "InternalError", "message": repr(type(exc)), "traceback": ""}}
            )
