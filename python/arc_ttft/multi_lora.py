"""Per-row LoRA adapters with fixed shapes: several tasks' adapters in one decoding batch.

PEFT's mixed-adapter forward splits the batch by adapter in Python, so a step's shapes depend on which rows hold which
adapter: it cannot be compiled once and replayed. Here every LoRA ``Linear`` reads its adapters' ``A`` and ``B`` from
stacked buffers through a per-row index (a gather and two batched matmuls, as multi-LoRA servers do): one step has the
same shapes whatever the rows' adapters, so :mod:`.static_decode` compiles it once per bucket. The dynamic loop
(:func:`.generate._chunk`) uses it too, shrinking the index as rows leave (:meth:`Stacks.keep`): no per-adapter
split in any decoding step.

A :class:`Stacks` holds, for every LoRA ``Linear``, ``A`` as ``(capacity, r, in)``, ``B`` as ``(capacity, out, r)`` and
the scalings, plus the row index ``(batch,)``; all are written in place (:meth:`Stacks.load`), so the addresses a
captured graph reads stay valid. ``capacity`` is the number of distinct adapters a call may mix (on the static path
rounded up to a power of two, :func:`capacity_bucket`, so that buckets are few). Memory: ``capacity`` copies of the
adapter's weights (e.g. 4 × 70 MB for Qwen2-0.5B with r 32 on every linear layer in float32). :func:`patched` makes
the model's LoRA layers use them for the duration of a call.

Supported: plain LoRA on ``Linear`` layers (no DoRA or other variants, no ``fan_in_fan_out``, no LoRA bias) and no
``modules_to_save`` / trainable tokens (those keep whole per-adapter copies of a module); :func:`unsupported_reason`
says why otherwise, and the caller then decodes with PEFT's mixed batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch


def capacity_bucket(n: int) -> int:
    """Adapter slots in the stacks for ``n`` distinct adapters: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def _lora_linears(model: Any) -> list[Any]:
    from peft.tuners.lora.layer import Linear

    return [m for m in model.modules() if type(m) is Linear]


def unsupported_reason(model: Any, names: list[str]) -> str | None:
    """Why ``model``'s adapters ``names`` cannot be mixed per row here (``None`` when they can)."""
    from peft.tuners.lora.layer import LoraLayer
    from peft.utils import other

    # modules_to_save and trainable tokens (AuxiliaryTrainingWrapper in newer PEFT, ModulesToSaveWrapper before)
    kinds = ("AuxiliaryTrainingWrapper", "ModulesToSaveWrapper")
    wrappers = tuple(getattr(other, kind) for kind in kinds if hasattr(other, kind))
    layers = _lora_linears(model)
    if not layers:
        return "the model has no LoRA Linear layers"
    plain = {id(m) for m in layers}
    for module in model.modules():
        if isinstance(module, wrappers):
            return f"{type(module).__name__} (modules_to_save / trainable tokens) keeps whole per-adapter modules"
        if isinstance(module, LoraLayer) and id(module) not in plain:
            return f"LoRA layer type {type(module).__name__} (only plain Linear layers are supported)"
    for m in layers:
        if m.fan_in_fan_out:
            return "fan_in_fan_out LoRA layers"
        for name in names:
            if name not in m.lora_A:
                return f"adapter {name!r} is not loaded"
            variant = getattr(m, "lora_variant", {}).get(name)  # older PEFT: no variants, only use_dora
            if variant is not None or getattr(m, "use_dora", {}).get(name):
                return f"adapter {name!r} is a LoRA variant ({type(variant).__name__ if variant else 'DoRA'})"
            if m.lora_A[name].bias is not None or m.lora_B[name].bias is not None:
                return f"adapter {name!r} has LoRA biases"
        if len({m.lora_A[name].weight.shape for name in names}) > 1:
            return "the adapters have different ranks"
    return None


@dataclass
class _Layer:
    module: Any
    a: torch.Tensor  # (capacity, r, in)
    b: torch.Tensor  # (capacity, out, r)
    scaling: torch.Tensor  # (capacity, 1, 1)
    forward: Callable[..., torch.Tensor] = field(init=False)


@dataclass
class Stacks:
    """Stacked adapter weights of every LoRA ``Linear`` and the per-row adapter index (see the module docstring)."""

    capacity: int
    idx: torch.Tensor  # (batch,) the stack slot of each row's adapter
    layers: list[_Layer]

    @classmethod
    def allocate(cls, model: Any, batch: int, capacity: int, device: torch.device) -> Stacks:
        layers = []
        idx = torch.zeros((batch,), dtype=torch.long, device=device)
        for m in _lora_linears(model):
            w_a = next(iter(m.lora_A.values())).weight  # (r, in)
            w_b = next(iter(m.lora_B.values())).weight  # (out, r)
            layer = _Layer(
                module=m,
                a=w_a.new_zeros((capacity, *w_a.shape)),
                b=w_b.new_zeros((capacity, *w_b.shape)),
                scaling=w_a.new_zeros((capacity, 1, 1)),
            )
            layers.append(layer)
        stacks = cls(capacity=capacity, idx=idx, layers=layers)
        for layer in layers:
            layer.forward = _gathered_forward(layer.module.base_layer, layer, stacks)  # once: compiled graphs guard it
        return stacks

    def load(self, names: list[str], rows: list[int]) -> None:
        """Copy adapters ``names`` into the stack slots 0, 1, …, and point each row at its adapter: ``rows[i]`` is
        the position in ``names`` of row ``i``'s adapter (padding rows beyond ``rows`` use slot 0)."""
        if len(names) > self.capacity:
            raise ValueError(f"{len(names)} adapters for {self.capacity} stack slots")
        with torch.no_grad():
            for layer in self.layers:
                m = layer.module
                for slot, name in enumerate(names):
                    layer.a[slot].copy_(m.lora_A[name].weight)
                    layer.b[slot].copy_(m.lora_B[name].weight)
                    layer.scaling[slot].fill_(m.scaling[name])
            index = torch.zeros_like(self.idx, device="cpu")
            index[: len(rows)] = torch.tensor(rows, dtype=torch.long)
            self.idx.copy_(index)

    def keep(self, rows: torch.Tensor) -> None:
        """Only the batch rows ``rows`` go on (the dynamic loop drops finished rows); a new index tensor."""
        self.idx = self.idx.index_select(0, rows)


def _gathered_forward(base: Any, layer: _Layer, stacks: Stacks) -> Callable[..., torch.Tensor]:
    def forward(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = base(x, *args, **kwargs)
        idx = stacks.idx
        # As PEFT's LoRA Linear: the input cast to the adapter's dtype, the sum in the wider dtype, then back.
        h = torch.matmul(x.to(layer.a.dtype), layer.a.index_select(0, idx).transpose(1, 2))  # (batch, seq, r)
        delta = torch.matmul(h, layer.b.index_select(0, idx).transpose(1, 2)) * layer.scaling.index_select(0, idx)
        return (result + delta).to(result.dtype)

    return forward


@contextlib.contextmanager
def patched(stacks: Stacks) -> Iterator[None]:
    """Every LoRA ``Linear`` of the stacks' model runs through the stacks (per-row adapters) inside the block."""
    try:
        for layer in stacks.layers:
            layer.module.forward = layer.forward  # an instance attribute: nn.Module.__call__ picks it up
        yield
    finally:
        for layer in stacks.layers:
            layer.module.__dict__.pop("forward", None)
