"""Several tasks in one generation batch: kept adapter slots and PEFT mixed-adapter batches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import call, call_error, constant_task

from arc_ttft import entry

STEPS = 40


def _train(answer: str, seed: int) -> list[str]:
    """Reset, train the live adapter on a constant task, return that task's test prompts."""
    samples, tests = constant_task(answer, seed=seed)
    call("reset_adapter", seed=seed)
    call("train", samples=samples, steps=STEPS, lr=5e-3, seed=seed)
    return tests


def _gen(prompts: list[str], **extra) -> list[dict]:
    return call("generate", prompts=prompts, max_new_tokens=8, stop=["."], **extra)["outputs"]


def _same(got: list[dict], want: list[dict]) -> None:
    assert [(o["text"], o["n_tokens"], o["finish_reason"]) for o in got] == [
        (o["text"], o["n_tokens"], o["finish_reason"]) for o in want
    ]
    for g, w in zip(got, want, strict=True):
        assert g["mean_logprob"] == pytest.approx(w["mean_logprob"], abs=1e-4)


def test_a_mixed_batch_gives_what_each_task_gives_alone(loaded) -> None:
    prompts_a = _train("12\n34", seed=1)
    alone_a = _gen(prompts_a)
    call("keep_adapter", slot=0)
    prompts_b = _train("56\n78", seed=2)
    alone_b = _gen(prompts_b)
    call("keep_adapter", slot=3)
    prompts_c = _train("9\n9", seed=3)  # the live adapter: a third task, not kept
    alone_c = _gen(prompts_c)
    # The two trained adapters answer differently, so a mixed batch that used one adapter for all would show it.
    assert [o["text"] for o in alone_a] != [o["text"] for o in alone_b]

    # Interleaved rows, so each row's adapter must follow it through the batch (and out of it when it finishes).
    prompts, slots, want = [], [], []
    for a, b, c, oa, ob, oc in zip(prompts_a, prompts_b, prompts_c, alone_a, alone_b, alone_c, strict=True):
        prompts += [a, b, c]
        slots += [0, 3, None]
        want += [oa, ob, oc]
    _same(_gen(prompts, adapters=slots), want)
    # merge cannot serve several adapters: it is turned off, the outputs stay the same
    _same(_gen(prompts, adapters=slots, merge=True), want)
    # smaller chunks of the mixed batch: each chunk carries its rows' adapters
    _same(_gen(prompts, adapters=slots, batch_size=2), want)
    # all rows on one kept slot equal the adapter that was kept there
    _same(_gen(prompts_a, adapters=[0] * len(prompts_a)), alone_a)


def test_keeping_copies_without_touching_training_or_saving(loaded, tmp_path: Path) -> None:
    model = entry._engine.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    _train("12\n34", seed=1)
    first = call("keep_adapter", slot=1)
    assert first["slot"] == 1 and first["kept"] == 1
    kept = {n: p.detach().clone() for n, p in model.named_parameters() if ".kept_1." in n}
    assert kept and all(not p.requires_grad for n, p in model.named_parameters() if ".kept_1." in n)
    # training goes on in the live adapter only: the kept copy stays, the trainable set is the same
    _train("56\n78", seed=2)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    for n, p in model.named_parameters():
        if n in kept:
            assert torch.equal(p, kept[n]), n
    # keeping the same slot again overwrites it in place: no new adapter
    n_adapters = len(model.peft_config)
    call("keep_adapter", slot=1)
    assert len(model.peft_config) == n_adapters
    assert any(not torch.equal(p, kept[n]) for n, p in model.named_parameters() if n in kept)
    # a saved adapter folder holds the live adapter only
    out = call("save_adapter", path=str(tmp_path / "a"))
    assert not any(os.path.isdir(os.path.join(out["path"], f)) for f in os.listdir(out["path"]))
    assert "adapter_model.safetensors" in out["files"]


def test_bad_slots_are_payload_errors_naming_the_entry(loaded) -> None:
    _, prompts = constant_task("1", n_test=2)
    err = call_error("generate", {"prompts": prompts, "max_new_tokens": 2, "adapters": [None, 5]})
    assert err["type"] == "PayloadError" and "generate.adapters[1]" in err["message"] and "keep_adapter" in err["message"]
    err = call_error("generate", {"prompts": prompts, "max_new_tokens": 2, "adapters": [None]})
    assert err["type"] == "PayloadError" and "2 entries" in err["message"]
    err = call_error("generate", {"prompts": prompts, "max_new_tokens": 2, "adapters": [None, "a"]})
    assert err["type"] == "PayloadError" and "generate.adapters[1]" in err["message"]
    err = call_error("keep_adapter", {"slot": 64})
    assert err["type"] == "PayloadError" and "keep_adapter.slot" in err["message"]


def test_per_prompt_token_limits_stop_each_row_where_it_would_stop_alone(loaded) -> None:
    _, prompts = constant_task("1", n_test=4, seed=7)
    limits = [1, 5, 3, 9]
    alone = [call("generate", prompts=[p], max_new_tokens=m)["outputs"][0] for p, m in zip(prompts, limits, strict=True)]
    together = call("generate", prompts=prompts, max_new_tokens=limits)["outputs"]
    _same(together, alone)
    assert [o["n_tokens"] for o in together if o["finish_reason"] == "length"] == [
        m for o, m in zip(together, limits, strict=True) if o["finish_reason"] == "length"
    ]
    err = call_error("generate", {"prompts": prompts, "max_new_tokens": [1, 2]})
    assert err["type"] == "PayloadError" and "generate.max_new_tokens" in err["message"]
    err = call_error("generate", {"prompts": prompts, "max_new_tokens": [1, 2, 0, 4]})
    assert err["type"] == "PayloadError" and "generate.max_new_tokens[2]" in err["message"]


def test_a_mixed_batch_of_prompts_of_different_lengths_gives_each_its_own_outputs(loaded) -> None:
    """Each adapter's rows are prefilled apart, padded to their own longest prompt, then joined: rows of short and
    long prompts, in both orders, must still give what each gives alone."""
    import random

    from conftest import grid_prompt

    rng = random.Random(4)
    _train("12\n34", seed=1)
    call("keep_adapter", slot=0)
    _train("56\n78", seed=2)
    short = [grid_prompt(rng, 1, rng.randint(1, 2)) for _ in range(3)]
    long = [grid_prompt(rng, 6, 5) + grid_prompt(rng, rng.randint(3, 6), 6) for _ in range(3)]
    alone_live = _gen(long) + _gen(short)
    alone_kept = _gen(short, adapters=[0] * 3) + _gen(long, adapters=[0] * 3)
    prompts = [short[0], long[0], long[1], short[1], short[2], long[2]]
    slots = [0, None, 0, None, 0, None]
    want = [alone_kept[0], alone_live[0], alone_kept[4], alone_live[4], alone_kept[2], alone_live[2]]
    _same(_gen(prompts, adapters=slots), want)
    assert max(map(len, prompts)) > 5 * min(map(len, prompts))  # the groups' own paddings differ a lot
