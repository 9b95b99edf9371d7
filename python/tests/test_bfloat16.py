"""The GPU's numbers on the CPU: bfloat16 base weights (what ``dtype: auto`` loads on CUDA) with PEFT's float32
adapters, trained under bfloat16 autocast with fused AdamW (the CUDA defaults, forced here). Every decode path
must accept the mixed dtypes and agree: the dynamic loop, merged weights, the static cache, and a mixed-adapter
batch read from stacked float32 copies. The float32 tests cover the same paths' values; this one covers their
dtypes, which CI would otherwise never see before a GPU run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from conftest import call, constant_task

from arc_ttft import entry

PLAIN_LORA = {"r": 8, "alpha": 16, "dropout": 0.0}  # stackable: no modules_to_save


@pytest.fixture
def bf16(tiny_path: str) -> Iterator[dict[str, Any]]:
    yield call("load_model", model=tiny_path, device="cpu", dtype="bfloat16", lora=PLAIN_LORA, seed=0)
    call("unload")


def _gen(prompts: list[str], **extra: Any) -> list[tuple[str, float]]:
    outputs = call("generate", prompts=prompts, max_new_tokens=8, stop=["."], **extra)["outputs"]
    return [(o["text"], o["mean_logprob"]) for o in outputs]


def _same(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [t for t, _ in got] == [t for t, _ in want]
    # bfloat16 activations: the static cache's attention and merged weights round differently
    assert [lp for _, lp in got] == pytest.approx([lp for _, lp in want], abs=0.02)


def test_bfloat16_weights_train_and_decode_on_every_path(bf16) -> None:
    assert bf16["dtype"] == "bfloat16"
    model = entry._engine.model
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
    assert {p.dtype for n, p in model.named_parameters() if "lora_" not in n} == {torch.bfloat16}

    prompts: list[list[str]] = []
    for slot, (answer, seed) in enumerate((("12\n34", 1), ("56\n78", 2))):
        samples, tests = constant_task(answer, seed=seed)
        call("reset_adapter", seed=seed)
        gpu_path = {"pack": True, "autocast": True, "fused_optimizer": True}  # the fast path as it runs on CUDA
        r = call("train", samples=samples, steps=20, lr=1e-2, batch_size=4, seed=seed, **gpu_path)
        assert r["autocast"] is True and r["fused_optimizer"] is True and r["packed"] is True
        assert r["losses"][-1] < r["losses"][0] / 2
        call("keep_adapter", slot=slot)
        prompts.append(tests)

    # the live adapter is the second task's
    want = _gen(prompts[1])
    _same(_gen(prompts[1], merge=True), want)
    _same(_gen(prompts[1], static_cache=True), want)

    rows = [p for pair in zip(*prompts, strict=True) for p in pair]
    slots = [0, 1] * len(prompts[0])
    alone = [_gen([p], adapters=[s])[0] for p, s in zip(rows, slots, strict=True)]
    _same(_gen(rows, adapters=slots), alone)
    _same(_gen(rows, adapters=slots, static_cache=True), alone)
    assert len({t for t, _ in alone}) > 1  # the two adapters answer differently
