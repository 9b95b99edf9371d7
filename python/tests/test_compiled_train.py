"""Compiled training (``train`` with ``compile``): the eager losses and gradients, one set of graphs for every row
length and every task, no recompile from kept slots or generation, and the graphs freed on unload."""

from __future__ import annotations

import pytest
import torch
from conftest import call, call_error
from test_fast_paths import _loss_and_grads, _samples

from arc_ttft import compiling, entry
from arc_ttft import train as train_mod


def _assert_same_step(seed: int) -> None:
    # 7 samples packed into rows of mixed lengths, 3 rows per pass
    ref_loss, _, ref = _loss_and_grads(pack=True, capacity=120, seed=seed, micro_size=3)
    loss, _, got = _loss_and_grads(pack=True, capacity=120, seed=seed, micro_size=3, compile=True)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert got.keys() == ref.keys()
    for name, g in ref.items():  # the embedding's scatter-add sums in another order: rounding near zero
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6 * g.abs().max().item()), name
    assert max(g.abs().max().item() for g in ref.values()) > 0


def test_compiled_training_equals_eager_and_compiles_once(loaded) -> None:
    call("train", samples=_samples(4, seed=9), steps=3, lr=5e-3, seed=1)  # a non-zero adapter (LoRA B starts at 0)
    _assert_same_step(seed=3)  # compiles: one graph for one-row passes, one for several
    graphs = compiling.graphs_compiled()
    _assert_same_step(seed=4)  # other samples, other row lengths: the same graphs
    assert compiling.graphs_compiled() == graphs

    params = {"samples": _samples(10), "steps": 3, "batch_size": 2, "grad_accum": 2, "lr": 2e-3, "seed": 0}
    call("reset_adapter")
    eager = call("train", **params, pack=True)
    call("reset_adapter")
    compiled = call("train", **params, pack=True, compile=True)
    assert (eager["compiled"], compiled["compiled"]) == (False, True)
    assert eager["compile_seconds"] == compiled["compile_seconds"] == 0.0  # the graphs exist: nothing compiled
    assert compiled["losses"] == pytest.approx(eager["losses"], rel=1e-4)
    assert compiled["tokens"] == eager["tokens"] and compiled["rows"] == eager["rows"]
    assert call("train", **params, compile=True)["compiled"] is False  # compile applies to packed rows only

    # Slots kept before training and mixed-adapter batches leave the graphs alone (the run keeps its slots first).
    call("keep_adapter", slot=0)
    call("keep_adapter", slot=1)
    call("reset_adapter")
    recompiled = call("train", **params, pack=True, compile=True)  # the new slots changed the adapter layout
    assert 0 < recompiled["compile_seconds"] < recompiled["seconds"]
    graphs = compiling.graphs_compiled()
    call("generate", prompts=["I\n12\nO\n", "I\n3\nO\n", "x"], max_new_tokens=3, adapters=[0, 1, None])
    call("keep_adapter", slot=1)
    call("reset_adapter")
    again = call("train", **params, pack=True, compile=True)
    assert compiling.graphs_compiled() == graphs
    assert again["losses"] == pytest.approx(eager["losses"], rel=1e-4)

    model = entry._engine.model
    assert compiling.kept(model)["train"]
    call("unload")
    assert "train" not in compiling.kept(model)  # freed at once, not at garbage collection


def test_models_without_a_plain_head_compile_the_whole_forward(loaded, monkeypatch) -> None:
    call("train", samples=_samples(4, seed=9), steps=3, lr=5e-3, seed=1)
    monkeypatch.setattr(train_mod, "PLAIN_HEAD_MODELS", set())
    _assert_same_step(seed=3)
    (fn,) = compiling.kept(entry._engine.model)["train"].values()  # one compiled forward: the model's


def test_a_graph_that_cannot_compile_is_a_compile_error(loaded, monkeypatch) -> None:
    """No working C++ compiler for inductor (a CPU machine without g++): a typed error that says how to go on."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", ("no-such-c++-compiler",))
    monkeypatch.setattr(inductor, "force_disable_caches", True)  # a cached graph would need no compiler
    params = {"samples": _samples(4), "steps": 1, "batch_size": 2, "lr": 2e-3, "seed": 0, "pack": True}
    err = call_error("train", {**params, "compile": True})
    assert err["type"] == "CompileError", err
    assert "C++ compiler" in err["message"] and "compiled training (compile)" in err["message"]
    monkeypatch.undo()
    assert call("train", **params)["compiled"] is False  # the engine goes on
