"""Attach a LoRA adapter to the base model, reset it in place between tasks, save and load it in PEFT's format.

The adapter is attached once per loaded model. Between tasks :func:`reset_adapter` writes a fixed initial state
back into the *same* parameter tensors — no model reload, no new modules — so every task starts from the same point:
either a fresh seeded init (LoRA ``A`` drawn from a CPU generator seeded per task, ``B`` zero, ``modules_to_save``
copies restored), or the pretrained adapter given as ``adapter_init`` at load time.

Several tasks can share one generation batch: :func:`keep_adapter` copies the trained adapter into a *slot*, a
second PEFT adapter of the same layout that is never trained; a batch then names an adapter per row (PEFT's mixed
adapter batches). Slots are made once and reused, so a kept adapter costs one adapter's memory and a device-local
copy.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import AdapterError

ADAPTER = "default"  # PEFT's adapter name of the adapter that trains
MAX_SLOTS = 64  # kept adapters per engine: each costs one adapter's memory


def slot_name(slot: int) -> str:
    """The PEFT adapter name of kept-adapter slot ``slot``."""
    return f"kept_{slot}"


@dataclass
class AdapterState:
    """What reset needs: the initial trainable tensors and how they were made.

    The tensors live on the parameters' device: a reset is then a device-local copy, with no host-to-GPU transfer
    of the adapter per task (they take as much memory as the adapter itself)."""

    initial: dict[str, torch.Tensor]
    seed: int
    init_path: str | None
    config: dict[str, Any] = field(default_factory=dict)


def attach_lora(
    model: Any,
    *,
    r: int,
    alpha: float,
    dropout: float,
    target_modules: str | list[str],
    modules_to_save: list[str] | None,
    adapter_init: str | None,
    seed: int,
) -> tuple[Any, AdapterState]:
    """Wrap ``model`` in a PEFT LoRA model; with ``adapter_init`` the adapter (and its config) come from that folder."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if adapter_init is not None:
        _check_adapter_folder(adapter_init)
        try:
            peft_model = PeftModel.from_pretrained(model, adapter_init, adapter_name=ADAPTER, is_trainable=True)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            raise AdapterError(f"adapter_init {adapter_init!r}: could not be loaded: {e}") from e
    else:
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=target_modules,
            modules_to_save=modules_to_save,
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            peft_model = get_peft_model(model, config, adapter_name=ADAPTER)
        except ValueError as e:  # e.g. target modules that the model does not have
            raise AdapterError(f"LoRA config does not fit the model: {e}") from e
        _seeded_lora_init(peft_model, seed)
    trainable = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    if not trainable:
        raise AdapterError("the LoRA config matched no module of the model: nothing would be trained")
    state = AdapterState(initial=trainable, seed=seed, init_path=adapter_init, config=describe_config(peft_model))
    return peft_model, state


def reset_adapter(peft_model: Any, state: AdapterState, seed: int | None = None) -> None:
    """Write the initial adapter back in place.

    With an ``adapter_init`` folder the state is exactly that adapter (``seed`` is unused). Otherwise LoRA ``A`` is
    redrawn from ``seed`` (default: the load seed, which reproduces the state right after loading) and ``B`` is zero.
    """
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if name in state.initial:
                param.copy_(state.initial[name])
        if state.init_path is None and seed is not None and seed != state.seed:
            _seeded_lora_init(peft_model, seed)


def keep_adapter(peft_model: Any, slot: int) -> str:
    """Copy the current (trained) adapter into slot ``slot``, in place; returns the slot's PEFT adapter name.

    The slot is a second adapter of the same config, added on first use and frozen; the copy covers every trainable
    tensor (LoRA ``A``/``B``, embedding LoRA, ``modules_to_save`` copies). Training, reset and save touch only the
    training adapter, so a kept adapter stays as it was until the slot is kept again.
    """
    import copy

    if not 0 <= slot < MAX_SLOTS:
        raise AdapterError(f"adapter slot {slot} is out of range: 0 to {MAX_SLOTS - 1}")
    name = slot_name(slot)
    if name not in peft_model.peft_config:
        cfg = copy.deepcopy(peft_model.peft_config[ADAPTER])
        cfg.init_lora_weights = False  # overwritten just below; do not draw from the global RNG
        cfg.inference_mode = True
        peft_model.add_adapter(name, cfg)
        peft_model.set_adapter(ADAPTER)  # the training adapter stays the active, trainable one
    params = dict(peft_model.named_parameters())
    trained = [key for key, p in params.items() if p.requires_grad]  # the training adapter's tensors only
    with torch.no_grad():
        for key in trained:
            target = _renamed(key, name)
            dst = params.get(target)
            if dst is None or target == key:
                raise AdapterError(f"adapter slot {slot}: no copy of {key} (adapter layout not supported)")
            dst.requires_grad_(False)
            dst.copy_(params[key])
    return name


def _renamed(key: str, adapter: str) -> str:
    """``key`` of the training adapter's tensor, for ``adapter``: the name sits between dots (``lora_A.default.weight``)
    or ends the key (an embedding's ``lora_embedding_A.default``)."""
    return re.sub(rf"\.{ADAPTER}(?=\.|$)", f".{adapter}", key)


def _seeded_lora_init(peft_model: Any, seed: int) -> None:
    """PEFT's default LoRA init (kaiming-uniform ``A``, zero ``B``), drawn from a CPU generator so it is the same
    for a seed on every device and independent of the global RNG."""
    from peft.tuners.lora import LoraLayer

    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for _, module in sorted(peft_model.named_modules(), key=lambda nm: nm[0]):
            if not isinstance(module, LoraLayer):
                continue
            if ADAPTER in module.lora_A:
                a = module.lora_A[ADAPTER].weight
                w = torch.empty(a.shape, dtype=torch.float32)
                torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=gen)
                a.copy_(w)
                module.lora_B[ADAPTER].weight.zero_()
                bias = getattr(module.lora_B[ADAPTER], "bias", None)
                if bias is not None:
                    bias.zero_()
            if ADAPTER in module.lora_embedding_A:
                module.lora_embedding_A[ADAPTER].zero_()
                b = module.lora_embedding_B[ADAPTER]
                w = torch.empty(b.shape, dtype=torch.float32)
                torch.nn.init.normal_(w, generator=gen)
                b.copy_(w)


def describe_config(peft_model: Any) -> dict[str, Any]:
    """The LoRA settings in force, as plain JSON values."""
    cfg = peft_model.peft_config[ADAPTER]
    targets = cfg.target_modules
    return {
        "r": cfg.r,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        # PEFT stores the resolved module paths; their leaf names (q_proj, ...) say the same, compactly.
        "target_modules": targets if isinstance(targets, str) else sorted({t.split(".")[-1] for t in targets or []}),
        "modules_to_save": sorted(cfg.modules_to_save) if cfg.modules_to_save else None,
    }


def save_adapter(peft_model: Any, path: str) -> str:
    """Write the adapter in PEFT's ``save_pretrained`` layout (adapter_config.json + adapter_model.safetensors)."""
    os.makedirs(path, exist_ok=True)
    # Only the training adapter: kept slots (keep_adapter) are working copies, not what the folder holds.
    peft_model.save_pretrained(path, safe_serialization=True, selected_adapters=[ADAPTER])
    return os.path.abspath(path)


def load_adapter(peft_model: Any, path: str) -> None:
    """Load an adapter folder's weights into the attached adapter, in place; its LoRA layout must match."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    _check_adapter_folder(path)
    with open(os.path.join(path, "adapter_config.json")) as f:
        saved = json.load(f)
    cfg = peft_model.peft_config[ADAPTER]
    for key, current in (("r", cfg.r), ("lora_alpha", cfg.lora_alpha), ("use_rslora", cfg.use_rslora)):
        if key in saved and saved[key] != current:
            raise AdapterError(f"adapter {path!r}: {key} is {saved[key]!r}, the attached adapter has {current!r}")
    # Whole-module copies the attached adapter does not train would be loaded onto the frozen base weights (PEFT
    # maps `…lm_head.weight` to the base lm_head), where no reset undoes them.
    saved_copies, attached_copies = sorted(saved.get("modules_to_save") or []), sorted(cfg.modules_to_save or [])
    if saved_copies != attached_copies:
        raise AdapterError(
            f"adapter {path!r}: modules_to_save is {saved_copies}, the attached adapter has {attached_copies}"
        )
    trained = {key: p for key, p in peft_model.named_parameters() if p.requires_grad}
    device = next(iter(trained.values())).device
    # PEFT writes every tensor that matches before it reports a mismatch: a refused folder must leave the
    # attached adapter as it was.
    before = {key: p.detach().clone() for key, p in trained.items()}
    try:
        try:
            weights = load_peft_weights(path, device=str(device))
            result = set_peft_model_state_dict(peft_model, weights, adapter_name=ADAPTER)
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise AdapterError(f"adapter {path!r}: could not be loaded: {e}") from e
        # The training adapter's tensors only: kept slots (keep_adapter) are not in the folder and need not be.
        missing = [k for k in result.missing_keys if k in trained]
        if missing or result.unexpected_keys:
            what = f"missing {missing[:3]}" if missing else f"unexpected {list(result.unexpected_keys)[:3]}"
            raise AdapterError(f"adapter {path!r} does not match the attached LoRA layout: {what}")
    except AdapterError:
        with torch.no_grad():
            for key, p in trained.items():
                p.copy_(before[key])
        raise


def _check_adapter_folder(path: str) -> None:
    if not os.path.isdir(path):
        raise AdapterError(f"adapter {path!r}: no such folder")
    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        raise AdapterError(f"adapter {path!r}: no adapter_config.json, not a PEFT adapter folder")
    if not any(os.path.isfile(os.path.join(path, n)) for n in ("adapter_model.safetensors", "adapter_model.bin")):
        raise AdapterError(f"adapter {path!r}: no adapter_model.safetensors")
