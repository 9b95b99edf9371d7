"""Typed errors of the engine.

`entry.dispatch` reports every exception as data: ``{"type": <class name>, "message": ..., "traceback": ...}``.
The class names below are part of the protocol, so the TypeScript side can branch on them.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of the errors the engine raises on purpose."""


class UnknownMethodError(EngineError):
    """`dispatch` got a method name it does not know."""


class PayloadError(EngineError, ValueError):
    """A payload field is missing, unknown, of the wrong type or out of range; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class ModelNotFoundError(EngineError, FileNotFoundError):
    """A model path does not exist or is not a Hugging Face model folder."""


class NotLoadedError(EngineError, RuntimeError):
    """A method needs a loaded model but `load_model` has not been called (or `unload` was)."""


class AdapterError(EngineError, ValueError):
    """An adapter folder is missing, malformed, or does not match the attached LoRA layout."""


class NoTrainableSamplesError(EngineError, ValueError):
    """Every training sample was longer than `max_seq_len` (or none was given): nothing to train on."""


class TrainingDivergedError(EngineError, RuntimeError):
    """A training step's loss was not finite: the weights have blown up (a learning rate too high for the model, or
    float16 overflow); reset the adapter before using it again."""


class DeviceError(EngineError, RuntimeError):
    """The requested device (e.g. ``cuda``) or dtype is not available on this machine."""


class AttentionUnavailableError(EngineError, ImportError):
    """The chosen attention implementation (e.g. ``flash_attention_2`` without the flash-attn package) cannot be used
    with this model or on this machine."""


class CompileError(EngineError, RuntimeError):
    """``torch.compile`` could not compile a graph (e.g. no working C++ compiler for inductor on a CPU); the
    message says how to go on without compiling."""


class BackendUnavailableError(EngineError, ImportError):
    """The chosen generation backend (``vllm``) is not installed or cannot be imported; the message says how to
    install it."""
