"""Per-row adapters from stacked copies (multi_lora.py): a mixed batch in the dynamic loop and on the static (and
compiled) path gives what each task gives alone, compiles once per bucket whatever the rows' adapters, and adapter
kinds it cannot stack take PEFT's mixed batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import call, constant_task
from test_kept_adapters import _gen, _same

from arc_ttft import compiling, entry, multi_lora
from arc_ttft import static_decode as sd

# No modules_to_save: per-row stacking covers plain LoRA on Linear layers.
PLAIN_LORA = {"r": 8, "alpha": 16, "dropout": 0.0}


@pytest.fixture
def plain(tiny_path: str) -> Iterator[dict[str, Any]]:
    yield call("load_model", model=tiny_path, device="cpu", lora=PLAIN_LORA, seed=0)
    call("unload")


def _three_adapters() -> tuple[list[str], list[int | None]]:
    """Trains three tasks' adapters (two kept in slots 0 and 3, one live); their test prompts interleaved."""
    prompts: list[list[str]] = []
    for slot, (answer, seed) in zip((0, 3, None), (("12\n34", 1), ("56\n78", 2), ("9\n9", 3)), strict=True):
        samples, tests = constant_task(answer, seed=seed)
        call("reset_adapter", seed=seed)
        call("train", samples=samples, steps=30, lr=1e-2, seed=seed)
        if slot is not None:
            call("keep_adapter", slot=slot)
        prompts.append(tests)
    rows = [(p, s) for trio in zip(*prompts, strict=True) for p, s in zip(trio, (0, 3, None), strict=True)]
    return [p for p, _ in rows], [s for _, s in rows]


def test_mixed_batches_with_stacked_adapters_equal_each_task_alone(plain) -> None:
    prompts, slots = _three_adapters()
    want = _gen(prompts, adapters=slots)  # the dynamic loop, rows reading their adapters from the stacks
    alone = [_gen([p], adapters=[s])[0] for p, s in zip(prompts, slots, strict=True)]
    _same(want, alone)
    assert len({o["n_tokens"] for o in want}) > 1  # rows left the batch at different steps (the index shrank)
    # the adapters differ: one adapter for all rows would not give these log-probs
    assert len({round(o["mean_logprob"], 3) for o in want}) > 3

    model = entry._engine.model
    _same(_gen(prompts, adapters=slots, static_cache=True), want)
    assert [key[4] for key in sd.cached_buckets(model)] == [4]  # 3 adapters: stacks of 4
    _same(_gen(prompts, adapters=slots, static_cache=True, compile=True), want)
    graphs = compiling.graphs_compiled()
    # Another arrangement of the same adapters over the rows, the same bucket: the compiled step is reused.
    rearranged = slots[1:] + slots[:1]
    expected = [_gen([p], adapters=[s])[0] for p, s in zip(prompts, rearranged, strict=True)]
    _same(_gen(prompts, adapters=rearranged, static_cache=True, compile=True), expected)
    assert compiling.graphs_compiled() == graphs
    # The model's own LoRA layers are untouched afterwards.
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_adapter_kinds_it_cannot_stack_take_peft_mixed_batches(loaded) -> None:
    """The test engine trains modules_to_save (whole per-adapter copies of the embeddings): no stacking."""
    samples, tests = constant_task("12\n34", seed=1)
    call("train", samples=samples, steps=5, lr=1e-2, seed=1)
    call("keep_adapter", slot=0)
    model = entry._engine.model
    assert "modules_to_save" in (multi_lora.unsupported_reason(model, ["default", "kept_0"]) or "")
    mixed = [0, None, 0]
    _same(_gen(tests, adapters=mixed, static_cache=True), _gen(tests, adapters=mixed))
    assert all(key[4] == 0 for key in sd.cached_buckets(model))


def test_unsupported_reasons(plain) -> None:
    model = entry._engine.model
    assert multi_lora.unsupported_reason(model, ["default"]) is None
    assert "not loaded" in (multi_lora.unsupported_reason(model, ["default", "kept_9"]) or "")
    assert [multi_lora.capacity_bucket(n) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 4, 8, 16]


def test_stacked_mixed_batches_leave_the_compiled_training_graphs_alone(plain) -> None:
    """The per-row forwards are patched in for a call and removed after: compiled training does not recompile."""
    from test_fast_paths import _samples

    call("keep_adapter", slot=0)
    call("keep_adapter", slot=1)
    params = {"samples": _samples(10), "steps": 3, "batch_size": 2, "lr": 2e-3, "seed": 0, "pack": True}
    call("train", **params, compile=True)
    _, tests = constant_task("1", n_test=3)
    call("generate", prompts=tests, max_new_tokens=4, adapters=[0, 1, None])
    call("generate", prompts=tests, max_new_tokens=4, adapters=[0, 1, None], static_cache=True, compile=True)
    graphs = compiling.graphs_compiled()
    again = call("train", **params, compile=True)
    assert compiling.graphs_compiled() == graphs and again["compile_seconds"] == 0.0
