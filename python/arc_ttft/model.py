"""Load a base causal language model and its tokenizer once, on the chosen device and dtype."""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

import torch

from .errors import AttentionUnavailableError, DeviceError, ModelNotFoundError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# "name" or "org/name": what the Hugging Face Hub accepts as a repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def resolve_device(spec: str) -> torch.device:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cuda``/``cuda:N`` must exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise DeviceError(f"invalid device {spec!r}: {e}") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested but CUDA is not available (torch {torch.__version__})")
        index = device.index if device.index is not None else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r} (use 'auto', 'cpu', 'cuda' or 'cuda:N')")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: a CUDA GPU of compute capability 8 or more (Ampere on).
    ``torch.cuda.is_bf16_supported()`` also says yes where bfloat16 is only emulated (a T4, a V100: slow, and
    some attention kernels refuse it), and asks about the current GPU rather than ``device``."""
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``auto`` → bfloat16 on a GPU that computes in it natively, else float32 (float16 weights train poorly
    without scaling)."""
    if spec == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return DTYPES[spec]


def check_model_source(path: str) -> str:
    """The local folder (or Hub id) to load; ModelNotFoundError naming ``path`` when it cannot be a model."""
    local = os.path.expanduser(path)
    if os.path.isdir(local):
        if not os.path.isfile(os.path.join(local, "config.json")):
            raise ModelNotFoundError(f"model {path!r}: the folder has no config.json, it is not a Hugging Face model")
        return local
    if os.path.exists(local):
        raise ModelNotFoundError(f"model {path!r}: is a file, expected a model folder")
    if path.startswith((".", "/", "~")) or not _HUB_ID.match(path):
        raise ModelNotFoundError(f"model {path!r}: no such folder")
    return path  # a Hub id: from_pretrained fetches (or finds it in the local cache)


ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
"""Attention implementations ``load_model`` accepts (``None``: transformers' choice, SDPA where the model has it)."""


def load_base(
    path: str, dtype: torch.dtype, device: torch.device, attention: str | None = None
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``: model frozen, in eval mode, on ``device``; tokenizer with a pad token.
    ``attention`` picks the attention implementation (one of :data:`ATTENTION`; ``None``: transformers' choice)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = check_model_source(path)
    quiet_progress()
    extra = {"attn_implementation": attention} if attention is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **extra)
    except ImportError as e:
        # e.g. flash_attention_2 without the flash-attn package: a setup problem, not a bad model folder
        raise AttentionUnavailableError(f"attention {attention!r} is not available here: {e}") from e
    except (OSError, ValueError) as e:
        # transformers raises OSError for missing files / unknown Hub ids, ValueError for unknown architectures.
        raise ModelNotFoundError(f"model {path!r}: could not be loaded as a causal LM: {e}") from e
    if tokenizer.pad_token_id is None:
        # Many base models ship without a pad token; any id works since padded positions are masked out.
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ModelNotFoundError(f"model {path!r}: the tokenizer has no EOS token, answers could not end")
    tokenizer.padding_side = "left"
    model.to(device)
    model.eval()
    model.requires_grad_(False)
    return model, tokenizer


def memory_info(device: torch.device | None) -> dict[str, Any]:
    """Resident memory of this process and, on CUDA, allocated/peak/reserved bytes of the device."""
    info: dict[str, Any] = {"rss_bytes": _rss_bytes()}
    if device is not None and device.type == "cuda":
        info["cuda_allocated_bytes"] = torch.cuda.memory_allocated(device)
        info["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        info["cuda_reserved_bytes"] = torch.cuda.memory_reserved(device)
    return info


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import resource  # noqa: PLC0415 — peak, not current, where /proc is missing (macOS)

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except Exception:  # noqa: BLE001
            return None


def supports_logits_to_keep(model: Any) -> bool:
    """Whether the (PEFT-wrapped) model's forward can skip the output layer on positions we do not need."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def quiet_progress() -> None:
    """No tqdm bars: the engine's stderr goes to the Node host's log, where bars are only noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# Config keys that bound the sequence length, by architecture (GPT-2: n_positions, …); vLLM reads the same ones.
# src/cli/commands/inspect.ts (POSITION_KEYS) holds the same list: keep the two equal.
_POSITION_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)


def max_positions(config: Any) -> int | None:
    """The longest sequence the model's config allows (the smallest bound it gives), or None when it gives none."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    bounds = [v for k in _POSITION_KEYS if isinstance(v := getattr(text, k, None), int) and not isinstance(v, bool)]
    return min((v for v in bounds if v > 0), default=None)
