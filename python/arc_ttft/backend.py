"""Generation backends: who decodes the answers. Training always runs on the PEFT model (:mod:`arc_ttft.train`).

Two backends share one contract (``python/tests/test_backend_contract.py`` checks it for both):

- ``transformers`` (default, CPU or GPU): the engine's own decoding loop (:func:`arc_ttft.generate.generate`) on the
  live PEFT model, so a trained adapter is used as it is, with no copy.
- ``vllm`` (optional, CUDA): vLLM's ``LLM`` on the same base model folder, with each adapter version handed over as
  a ``LoRARequest`` on a saved PEFT folder (:mod:`arc_ttft.vllm_backend`).

Which adapter a call uses is an :class:`AdapterRef`: ``None`` is the base model without any adapter; a ref with a
``path`` names a saved PEFT folder; a ref without one (``path=None``) is the training model's live adapter, which
only a backend with ``needs_adapter_folder == False`` can use. ``AdapterRef.id`` identifies one adapter *version*:
vLLM caches adapters by id, so new weights need a new id.

The contract: greedy decoding is deterministic; each output says its text (EOS and any stop string removed), how
many tokens were generated (counting the EOS or the token that completed a stop string), their mean log-probability
under the model's own distribution (temperature 1, no top-p) and why it ended (``eos``, ``stop`` or ``length``); a
batch gives what each prompt gives alone; prompts are tokenised as raw text (:func:`arc_ttft.tokens.encode_batch`).
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import AdapterError, PayloadError
from .generate import GenerateConfig

__all__ = [
    "BACKENDS",
    "AdapterRef",
    "Backend",
    "BackendContext",
    "GeneratedText",
    "GenerateResult",
    "TransformersBackend",
    "get_backend",
]

BACKENDS = ("transformers", "vllm")


@dataclass(frozen=True)
class AdapterRef:
    """One adapter version: ``name`` and ``id`` (> 0, new for new weights) as vLLM's ``LoRARequest`` wants them,
    and the PEFT folder holding it (``None``: the training model's live adapter). ``slot`` marks a kept adapter
    (the ``keep_adapter`` method): a copy of an earlier version held for a later mixed batch."""

    name: str
    id: int
    path: str | None = None
    slot: int | None = None


@dataclass(frozen=True)
class BackendContext:
    """What a backend may need at load time; each backend uses its part."""

    model_path: str  # the model folder or Hub id the PEFT model was loaded from
    model: Any  # the PEFT-wrapped training model
    tokenizer: Any  # the engine's tokenizer (pad token set, left padding)
    device: Any  # torch.device of the training model
    dtype: Any  # torch.dtype of the training model
    lora: dict[str, Any]  # the LoRA settings in force (lora.describe_config)
    max_model_len: int  # longest prompt + answer the backend must serve
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # backend-specific settings


@dataclass(frozen=True)
class GeneratedText:
    """One completion. ``token_ids`` / ``token_logprobs`` are filled when the backend reports them."""

    text: str
    n_tokens: int
    mean_logprob: float
    finish_reason: str  # "eos" | "stop" | "length"
    token_ids: tuple[int, ...] | None = None
    token_logprobs: tuple[float, ...] | None = None

    @property
    def logprob(self) -> float:
        """Log-probability of the whole generated sequence (the sum over its tokens)."""
        if self.token_logprobs is not None:
            return float(sum(self.token_logprobs))
        return self.mean_logprob * self.n_tokens

    def as_json(self) -> dict[str, Any]:
        """The protocol's output object (see :mod:`arc_ttft.entry`, method ``generate``)."""
        return {
            "text": self.text,
            "n_tokens": self.n_tokens,
            "mean_logprob": self.mean_logprob,
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class GenerateResult:
    """Outputs in prompt order, total generated tokens, wall seconds."""

    outputs: tuple[GeneratedText, ...]
    tokens: int
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {"outputs": [o.as_json() for o in self.outputs], "tokens": self.tokens, "seconds": self.seconds}


class Backend(ABC):
    """A generation backend: :meth:`load` once per loaded model, :meth:`generate` per call, :meth:`close` at the end."""

    name: ClassVar[str]
    needs_adapter_folder: ClassVar[bool]
    """True when adapters must be saved to a folder first (``AdapterRef.path``); False when the live one works."""

    @abstractmethod
    def load(self, ctx: BackendContext) -> dict[str, Any]:
        """Get ready to generate for the model in ``ctx``; returns facts worth reporting (JSON values)."""

    @abstractmethod
    def generate(self, prompts: list[str], cfg: GenerateConfig, adapter: AdapterRef | None) -> GenerateResult:
        """Complete every prompt with ``adapter`` (``None``: the base model); outputs in prompt order."""

    @abstractmethod
    def keep(self, live: AdapterRef, slot: int) -> AdapterRef:
        """Hold a copy of the ``live`` adapter version in ``slot`` for :meth:`generate_mixed`; returns its ref."""

    @abstractmethod
    def generate_mixed(self, prompts: list[str], cfg: GenerateConfig, adapters: list[AdapterRef]) -> GenerateResult:
        """Complete every prompt with its own adapter (``adapters[i]``: the live one or a kept one), all in one
        batch where the backend can; outputs in prompt order, each as it would be from :meth:`generate`."""

    def release(self, adapter: AdapterRef) -> None:  # noqa: B027 — optional hook, a no-op by default
        """Forget an adapter version that will not be used again (frees its cached copy)."""

    def close(self) -> None:  # noqa: B027 — optional hook, a no-op by default
        """Free what :meth:`load` took (idempotent)."""


class TransformersBackend(Backend):
    """The engine's own decoding loop on the live PEFT model (CPU or GPU).

    It serves one adapter: the training model's. ``AdapterRef(path=None)`` uses it as it is; a ref with a folder
    loads that folder's weights into it in place (as the ``load_adapter`` method does) unless that same ref was
    the last one loaded; ``None`` generates with the adapter disabled (the base model).
    """

    name = "transformers"
    needs_adapter_folder = False

    def __init__(self) -> None:
        self._model: Any = None
        self._tokenizer: Any = None
        self._loaded: AdapterRef | None = None

    def load(self, ctx: BackendContext) -> dict[str, Any]:
        self._model, self._tokenizer, self._loaded = ctx.model, ctx.tokenizer, None
        return {}

    def generate(self, prompts: list[str], cfg: GenerateConfig, adapter: AdapterRef | None) -> GenerateResult:
        from . import lora
        from .generate import generate

        if self._model is None:
            raise RuntimeError("TransformersBackend.generate before load")
        start = time.perf_counter()
        if adapter is None:
            if getattr(cfg, "merge", False):  # a disabled adapter merged is wasted work: PEFT unmerges it again
                cfg = dataclasses.replace(cfg, merge=False)
            with self._model.disable_adapter():  # LoRA layers and modules_to_save copies both off
                raw = generate(self._model, self._tokenizer, prompts, cfg)
        else:
            if adapter.path is not None and adapter != self._loaded:
                lora.load_adapter(self._model, adapter.path)
                self._loaded = adapter
            elif adapter.path is None:
                self._loaded = None  # the live weights may have moved on since a folder was loaded
            raw = generate(self._model, self._tokenizer, prompts, cfg)
        outputs = tuple(_from_loop(o) for o in raw["outputs"])
        return GenerateResult(outputs, sum(o.n_tokens for o in outputs), time.perf_counter() - start)

    def keep(self, live: AdapterRef, slot: int) -> AdapterRef:
        from . import lora

        if self._model is None:
            raise RuntimeError("TransformersBackend.keep before load")
        name = lora.keep_adapter(self._model, slot)
        return AdapterRef(name=name, id=live.id, slot=slot)

    def generate_mixed(self, prompts: list[str], cfg: GenerateConfig, adapters: list[AdapterRef]) -> GenerateResult:
        from . import lora
        from .generate import generate

        if self._model is None:
            raise RuntimeError("TransformersBackend.generate_mixed before load")
        if len(adapters) != len(prompts):
            raise PayloadError("generate.adapters", f"{len(adapters)} adapters for {len(prompts)} prompts")
        names = []
        for a in adapters:
            if a.slot is None and a.path is not None:
                raise AdapterError(f"adapter {a.name!r}: a mixed batch takes the live adapter or kept slots only")
            names.append(lora.ADAPTER if a.slot is None else lora.slot_name(a.slot))
        if all(n == lora.ADAPTER for n in names):  # one adapter after all: the plain (mergeable) path
            return self.generate(prompts, cfg, adapters[0] if adapters else None)
        start = time.perf_counter()
        self._loaded = None
        raw = generate(self._model, self._tokenizer, prompts, cfg, names)
        outputs = tuple(_from_loop(o) for o in raw["outputs"])
        return GenerateResult(outputs, sum(o.n_tokens for o in outputs), time.perf_counter() - start)

    def close(self) -> None:
        self._model = self._tokenizer = self._loaded = None


def _from_loop(o: dict[str, Any]) -> GeneratedText:
    """An output of :func:`arc_ttft.generate.generate`; its per-token lists are taken when it reports them."""
    ids, lps = o.get("token_ids"), o.get("token_logprobs")
    return GeneratedText(
        text=o["text"],
        n_tokens=o["n_tokens"],
        mean_logprob=o["mean_logprob"],
        finish_reason=o["finish_reason"],
        token_ids=tuple(ids) if ids is not None else None,
        token_logprobs=tuple(lps) if lps is not None else None,
    )


def get_backend(name: str) -> Backend:
    """A new, unloaded backend by name. ``vllm`` imports vLLM here, so a missing install fails at once with
    :class:`~arc_ttft.errors.BackendUnavailableError` (saying how to install it), before any model is loaded."""
    if name == "transformers":
        return TransformersBackend()
    if name == "vllm":
        from .vllm_backend import VLLMBackend

        return VLLMBackend()
    raise PayloadError("load_model.backend", f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
