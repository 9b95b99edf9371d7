"""The optional vLLM generation backend: vLLM's ``LLM`` on the base model folder, adapters as ``LoRARequest``s.

vLLM is imported lazily (:class:`VLLMBackend` construction), so the engine runs without it; a missing or broken
install is a :class:`~arc_ttft.errors.BackendUnavailableError` whose message gives the install command for this very
interpreter. Training stays on the PEFT model; each adapter version the engine generates with is saved to a folder
and handed to vLLM as ``LoRARequest(name, id, path)`` with a new id (vLLM caches adapters by id).

What differs from the ``transformers`` backend (see docs/engine.md, "Backends"):

- CUDA only; the engine's PEFT model (for training) and vLLM's copy of the base model share the GPU, so vLLM takes
  only ``gpu_memory_utilization`` of it (default: half, less when the training model left less free).
- No reduced vocabulary and no ``modules_to_save`` (vLLM loads the model folder as it is and accepts LoRA weights
  only): both are rejected at load.
- Greedy outputs match up to floating-point differences of the kernels (bf16 ties may break the other way); sampled
  outputs differ (vLLM seeds each request: ``seed + index``). Log-probs are vLLM's raw ones (the model's own
  distribution, before temperature / top-p), which is what the transformers backend reports too.
- vLLM's engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set): the bridge's crash,
  timeout and watchdog handling then cover it like the rest of the engine.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

from .backend import AdapterRef, Backend, BackendContext, GeneratedText, GenerateResult
from .errors import AdapterError, BackendUnavailableError, DeviceError, PayloadError
from .generate import GenerateConfig, row_limits
from .tokens import encode_batch

__all__ = ["VLLMBackend", "install_hint", "import_vllm", "lora_rank_limit", "to_generated", "unsupported_lora"]

# Ranks vLLM accepts as ``max_lora_rank`` (vllm/config/lora.py, MaxLoRARanks; 1 only in recent versions).
_VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
_SEED_STRIDE = 1_000_003
# Kept adapters' ids count up from here, apart from the live versions' ids (1, 2, … from the engine). vLLM keeps
# LoRA ids as int32 in places (its V2 model runner; the V1 one up to 0.11): every id must stay below 2**31.
_FIRST_KEPT_ID = 1_000_000_000


def install_hint() -> str:
    """The command that installs vLLM into the Python running this engine (the arc-ttft venv, usually)."""
    return f"{sys.executable} -m pip install vllm"


def import_vllm() -> Any:
    """``import vllm``, or a :class:`BackendUnavailableError` saying why and how to install it."""
    # In-process engine core: no spawned child re-importing the bridge host's main module, one process to kill.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "vllm":
            what = f"the vllm package is not installed in this Python ({sys.executable})"
        else:
            what = f"vllm is installed but could not be imported ({type(e).__name__}: {e})"
        raise BackendUnavailableError(
            f"backend 'vllm': {what}. On a machine with an NVIDIA GPU and CUDA, install it into the engine's "
            f"environment with: {install_hint()} (the venv `npx arc-ttft setup` prints), then start the engine "
            "again; or use backend 'transformers' (the default), which needs no extra install."
        ) from e
    return vllm


def lora_rank_limit(r: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds rank ``r``."""
    for rank in _VLLM_LORA_RANKS:
        if r <= rank:
            return rank
    raise PayloadError("load_model.lora.r", f"{r} is larger than vLLM's largest LoRA rank {_VLLM_LORA_RANKS[-1]}")


# Leaf names of embedding and output layers: vLLM takes LoRA on them for a few architectures only (not Qwen2), and a
# folder it refuses fails inside its engine step, for every request after it too.
HEAD_MODULES = ("embed_tokens", "lm_head", "wte", "word_embeddings")


def unsupported_lora(config: Any) -> list[str]:
    """What vLLM's LoRA loader would refuse or silently ignore in a PEFT ``LoraConfig`` (empty: it serves it as is).

    vLLM reads only ``r``, ``lora_alpha`` (or rsLoRA) and the target modules: DoRA and a trained bias are refused at
    the first request, per-module ``rank_pattern`` / ``alpha_pattern`` are ignored (wrong outputs), and whole-module
    copies (``modules_to_save``) are not LoRA weights. An ``adapter_init`` folder can bring any of them.
    """
    problems = []
    if getattr(config, "use_dora", False):
        problems.append("DoRA (use_dora)")
    if getattr(config, "bias", "none") != "none":
        problems.append(f"a trained bias (bias {config.bias!r})")
    for name in ("rank_pattern", "alpha_pattern"):
        if getattr(config, name, None):
            problems.append(f"per-module {name}")
    if getattr(config, "modules_to_save", None):
        problems.append(f"modules_to_save {sorted(config.modules_to_save)}")
    targets = getattr(config, "target_modules", None)
    if not isinstance(targets, str):
        head = sorted({t.split(".")[-1] for t in targets or ()} & set(HEAD_MODULES))
        if head:
            problems.append(f"LoRA on {head} (vLLM serves LoRA on linear layers only)")
    return problems


def gpu_share(requested: float | None, free: int, total: int) -> float:
    """vLLM's ``gpu_memory_utilization``: the requested share, or by default half the GPU, less when the training
    model already holds more (vLLM refuses to start when that share of the whole GPU is not free)."""
    if requested is not None:
        return requested
    return round(max(0.05, min(0.5, 0.9 * free / total)), 3)


def to_generated(
    text: str,
    token_ids: list[int] | tuple[int, ...],
    token_logprobs: list[float],
    finish_reason: str | None,
    stop_reason: int | str | None,
) -> GeneratedText:
    """Map one vLLM completion to the contract's output.

    vLLM reports ``finish_reason`` ``"stop"`` for both an EOS (``stop_reason`` ``None`` or the stop token id) and a
    stop string (``stop_reason`` the string), ``"length"`` at ``max_tokens``. ``token_ids`` include the EOS or the
    token that completed the stop string, as the contract's ``n_tokens`` counts them; ``text`` has neither.
    """
    if finish_reason == "length":
        reason = "length"
    elif finish_reason == "stop":
        reason = "stop" if isinstance(stop_reason, str) else "eos"
    else:
        raise RuntimeError(f"vLLM ended a request with finish_reason {finish_reason!r}")
    if len(token_logprobs) != len(token_ids):
        raise RuntimeError(f"vLLM returned {len(token_logprobs)} log-probs for {len(token_ids)} tokens")
    n = len(token_ids)
    return GeneratedText(
        text=text,
        n_tokens=n,
        mean_logprob=sum(token_logprobs) / n if n else 0.0,
        finish_reason=reason,
        token_ids=tuple(int(t) for t in token_ids),
        token_logprobs=tuple(float(x) for x in token_logprobs),
    )


def _sampled_logprobs(completion: Any) -> list[float]:
    """The log-prob of each chosen token: position ``i`` of ``completion.logprobs`` maps token ids to ``Logprob``."""
    positions = completion.logprobs
    if positions is None:
        raise RuntimeError("vLLM returned no log-probs although they were requested")
    out = []
    for i, tok in enumerate(completion.token_ids):
        entry = positions[i][tok]
        out.append(float(entry.logprob if hasattr(entry, "logprob") else entry))
    return out


class VLLMBackend(Backend):
    """vLLM's offline ``LLM`` with LoRA enabled; ``max_loras`` adapters per batch (default 1; raise it for mixed
    batches of several tasks)."""

    name = "vllm"
    needs_adapter_folder = True

    def __init__(self) -> None:
        self._vllm = import_vllm()  # fails here, before any model is loaded
        self._llm: Any = None
        self._tokenizer: Any = None
        self._ends: list[int] = []
        self._max_model_len = 0
        self._next_kept_id = _FIRST_KEPT_ID

    def load(self, ctx: BackendContext) -> dict[str, Any]:
        if ctx.device.type != "cuda":
            raise DeviceError(
                f"backend 'vllm' needs a CUDA GPU, the engine's device is {str(ctx.device)!r}; "
                "use backend 'transformers' on CPU"
            )
        if ctx.device.index not in (None, 0):
            raise DeviceError(
                f"backend 'vllm' runs on the first visible GPU, not {str(ctx.device)!r}: choose the GPU with the "
                "environment variable CUDA_VISIBLE_DEVICES and device 'cuda'"
            )
        from .lora import ADAPTER

        problems = unsupported_lora(ctx.model.peft_config[ADAPTER])
        if problems:
            raise AdapterError(
                f"backend 'vllm' cannot serve this adapter ({'; '.join(problems)}): use backend 'transformers', "
                "or an adapter of plain LoRA weights on linear layers"
            )
        o = ctx.options
        rank = lora_rank_limit(int(ctx.lora["r"]))
        max_loras = int(o.get("max_loras", 1))  # adapters one batch may mix (several tasks per batch need > 1)
        self._max_model_len = int(ctx.max_model_len)
        import torch

        from .generate import end_token_ids
        from .model import native_bf16

        self._tokenizer = ctx.tokenizer
        # vLLM adds the generation config's EOS ids itself; the list makes the tokenizer's count too.
        self._ends = sorted(end_token_ids(ctx.model, ctx.tokenizer))

        # vLLM's LoRA kernels take 16-bit activations only: a float32 training model (dtype auto on a GPU before
        # Ampere, or asked for) gets a 16-bit copy in vLLM.
        dtype = str(ctx.dtype).removeprefix("torch.")
        if dtype == "float32":
            dtype = "bfloat16" if native_bf16(ctx.device) else "float16"
        # vLLM checks at start that its share of the GPU is free: memory the caching allocator holds is not.
        torch.cuda.empty_cache()
        gpu_util = gpu_share(o.get("gpu_memory_utilization"), *torch.cuda.mem_get_info(ctx.device))
        extra = {} if o.get("prefix_caching") is None else {"enable_prefix_caching": bool(o["prefix_caching"])}
        self._llm = self._vllm.LLM(
            model=ctx.model_path,
            tokenizer=ctx.model_path,
            dtype=dtype,
            seed=ctx.seed % 2**32,  # vLLM seeds NumPy with it, which refuses negative and 64-bit seeds
            enable_lora=True,
            max_lora_rank=rank,
            max_loras=max_loras,
            gpu_memory_utilization=gpu_util,
            max_model_len=self._max_model_len,
            enforce_eager=bool(o.get("enforce_eager", False)),
            **extra,
        )
        return {
            "vllm_version": getattr(self._vllm, "__version__", None),
            "vllm_dtype": dtype,
            "max_lora_rank": rank,
            "gpu_memory_utilization": gpu_util,
            "max_model_len": self._max_model_len,
            "max_loras": max_loras,
        }

    def _encode(self, prompts: list[str]) -> list[list[int]]:
        if self._llm is None:
            raise RuntimeError("VLLMBackend.generate before load")
        ids = encode_batch(self._tokenizer, prompts)  # the engine's tokenisation, not vLLM's (no BOS added)
        for i, p in enumerate(ids):
            if not p:
                raise PayloadError(f"generate.prompts[{i}]", "tokenises to nothing: there is nothing to continue")
            if len(p) >= self._max_model_len:
                raise PayloadError(
                    f"generate.prompts[{i}]", f"{len(p)} tokens, vLLM's max_model_len is {self._max_model_len}"
                )
        return ids

    def _params(self, cfg: GenerateConfig, index: int, max_tokens: int) -> Any:
        sample = cfg.do_sample
        return self._vllm.SamplingParams(
            n=1,
            temperature=cfg.temperature if sample else 0.0,
            top_p=cfg.top_p if sample else 1.0,
            # One seed per request: identical prompts in one call must not draw identical samples.
            seed=(cfg.seed * _SEED_STRIDE + index) % 2**63 if sample else None,
            max_tokens=max_tokens,
            stop=list(cfg.stop) or None,
            stop_token_ids=self._ends or None,
            logprobs=1,  # the chosen token's log-prob is always among them
            skip_special_tokens=True,
            include_stop_str_in_output=False,
        )

    def generate(self, prompts: list[str], cfg: GenerateConfig, adapter: AdapterRef | None) -> GenerateResult:
        start = time.perf_counter()
        ids = self._encode(prompts)
        request = self._request(adapter) if adapter is not None else None
        return self._run(ids, cfg, request, start)

    def generate_mixed(self, prompts: list[str], cfg: GenerateConfig, adapters: list[AdapterRef]) -> GenerateResult:
        if len(adapters) != len(prompts):
            raise PayloadError("generate.adapters", f"{len(adapters)} adapters for {len(prompts)} prompts")
        start = time.perf_counter()
        ids = self._encode(prompts)
        # One LoRARequest per prompt: vLLM batches requests of up to max_loras adapters together.
        return self._run(ids, cfg, [self._request(a) for a in adapters], start)

    def keep(self, live: AdapterRef, slot: int) -> AdapterRef:
        import shutil

        if live.path is None:
            raise AdapterError("backend 'vllm' needs the adapter saved to a folder (AdapterRef.path)")
        path = os.path.join(os.path.dirname(live.path), f"kept-{slot}-v{live.id}")
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(live.path, path)
        # A new id per kept version (vLLM caches adapters by id), from a range of its own below 2**31.
        kept_id = self._next_kept_id
        self._next_kept_id += 1
        return AdapterRef(name=f"arc-ttft-kept-{slot}-v{live.id}-{kept_id}", id=kept_id, path=path, slot=slot)

    def _request(self, adapter: AdapterRef) -> Any:
        if adapter.path is None:
            raise AdapterError("backend 'vllm' needs the adapter saved to a folder (AdapterRef.path)")
        from vllm.lora.request import LoRARequest

        return LoRARequest(lora_name=adapter.name, lora_int_id=adapter.id, lora_path=adapter.path)

    def _run(self, ids: list[list[int]], cfg: GenerateConfig, request: Any, start: float) -> GenerateResult:
        results = self._llm.generate(
            [{"prompt_token_ids": p} for p in ids],
            [self._params(cfg, i, m) for i, m in enumerate(row_limits(cfg, len(ids)))],
            use_tqdm=False,
            lora_request=request,
        )
        outputs = []
        for r in results:  # LLM.generate returns them in prompt order
            c = r.outputs[0]
            outputs.append(to_generated(c.text, c.token_ids, _sampled_logprobs(c), c.finish_reason, c.stop_reason))
        return GenerateResult(tuple(outputs), sum(o.n_tokens for o in outputs), time.perf_counter() - start)

    def release(self, adapter: AdapterRef) -> None:
        # vLLM's LRU cache (max_loras adapters on the GPU) evicts old adapters anyway; removing one is only tidier.
        remove = getattr(getattr(self._llm, "llm_engine", None), "remove_lora", None)
        if remove is not None:
            try:
                remove(adapter.id)
            except (KeyError, ValueError, RuntimeError):
                pass  # not loaded (never scheduled, or already evicted)

    def close(self) -> None:
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        # Dropping the LLM object does not free the GPU: its engine core is shut down explicitly (best effort,
        # the attribute path differs between versions).
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # noqa: BLE001 — closing goes on: the memory is freed below as far as it can be
                pass
        del llm, core, shutdown  # the last references: the collection and empty_cache below can then free it
        try:  # a later LLM in this process needs the parallel state torn down
            from vllm.distributed import parallel_state

            cleanup = getattr(parallel_state, "cleanup_dist_env_and_memory", None)
            if cleanup is not None:
                cleanup()
            else:
                parallel_state.destroy_model_parallel()
                parallel_state.destroy_distributed_environment()
        except (ImportError, RuntimeError, AssertionError):
            pass
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
