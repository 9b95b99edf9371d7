"""Adapters: PEFT's on-disk format, loadable by PEFT itself; load_adapter and adapter_init restore them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import LORA, call, call_error, constant_task

from arc_ttft import entry
from arc_ttft.generate import GenerateConfig, generate

ANSWER = "343\n434\n343"


def _outputs(prompts: list[str]) -> list[dict]:
    return call("generate", prompts=prompts, max_new_tokens=16)["outputs"]


def test_saved_adapter_loads_in_plain_peft_with_the_same_generation(loaded, tiny_path: str, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=40, lr=2e-3, seed=0)
    ours = _outputs(tests)
    saved = call("save_adapter", path=str(tmp_path / "adapter"))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(saved["files"])
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 16, 32)

    base = AutoModelForCausalLM.from_pretrained(tiny_path, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, saved["path"])
    tok = AutoTokenizer.from_pretrained(tiny_path)
    theirs = generate(peft_model, tok, tests, GenerateConfig(max_new_tokens=16))["outputs"]
    assert [o["text"] for o in theirs] == [o["text"] for o in ours]
    # same weights, separately built modules: equal up to float rounding
    assert [o["mean_logprob"] for o in theirs] == pytest.approx([o["mean_logprob"] for o in ours], abs=1e-5)


def test_load_adapter_restores_a_saved_state(loaded, tmp_path: Path) -> None:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=40, lr=2e-3, seed=0)
    trained = _outputs(tests)
    path = call("save_adapter", path=str(tmp_path / "a"))["path"]
    call("reset_adapter")
    assert _outputs(tests) != trained
    assert call("load_adapter", path=path) == {}
    assert _outputs(tests) == trained


def test_adapter_init_is_the_state_every_reset_returns_to(loaded, tiny_path: str, tmp_path: Path) -> None:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=40, lr=2e-3, seed=0)
    trained = _outputs(tests)
    path = call("save_adapter", path=str(tmp_path / "init"))["path"]
    info = call("load_model", model=tiny_path, device="cpu", adapter_init=path, seed=0)
    assert info["lora"]["modules_to_save"] == sorted(LORA["modules_to_save"])
    assert _outputs(tests) == trained
    other, _ = constant_task("9", seed=3)
    call("train", samples=other, steps=10, lr=2e-3, seed=0)
    assert _outputs(tests) != trained
    call("reset_adapter", seed=123)  # seed is unused with adapter_init
    assert _outputs(tests) == trained
    assert call("status")["adapter_init"] == path


def test_mismatched_or_missing_adapters_are_adapter_errors(loaded, tiny_path: str, tmp_path: Path) -> None:
    error = call_error("load_adapter", {"path": str(tmp_path / "missing")})
    assert error["type"] == "AdapterError" and "missing" in error["message"]
    call("load_model", model=tiny_path, device="cpu", lora={"r": 4}, seed=0)
    path = call("save_adapter", path=str(tmp_path / "r4"))["path"]
    call("load_model", model=tiny_path, device="cpu", lora=LORA, seed=0)
    error = call_error("load_adapter", {"path": path})
    assert error["type"] == "AdapterError"
    assert "r is 4" in error["message"]
    assert entry._engine.model is not None  # the engine stays usable


def test_an_adapter_with_other_modules_to_save_is_refused_and_the_base_stays_intact(
    tiny_path: str, tmp_path: Path
) -> None:
    """PEFT would load a folder's whole-module copies onto the frozen base weights, where no reset reaches."""
    call("load_model", model=tiny_path, device="cpu", lora=LORA, seed=0)
    with_copies = call("save_adapter", path=str(tmp_path / "copies"))["path"]
    call("load_model", model=tiny_path, device="cpu", lora={"r": 16, "alpha": 32}, seed=0)
    frozen = {k: p.detach().clone() for k, p in entry._engine.model.named_parameters() if not p.requires_grad}
    error = call_error("load_adapter", {"path": with_copies})
    assert error["type"] == "AdapterError" and "modules_to_save" in error["message"]
    after = dict(entry._engine.model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in frozen.items())
    call("unload")


def test_target_modules_the_model_lacks_are_an_adapter_error(tiny_path: str) -> None:
    error = call_error("load_model", {"model": tiny_path, "device": "cpu", "lora": {"target_modules": ["nope_proj"]}})
    assert error["type"] == "AdapterError"
    assert "nope_proj" in error["message"]


def _adapter_state() -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in entry._engine.model.named_parameters() if p.requires_grad}


def test_a_refused_adapter_folder_leaves_the_live_adapter_as_it_was(tiny_path: str, tmp_path: Path) -> None:
    """PEFT copies the tensors that match before it reports the ones that do not: those copies are undone."""
    call("load_model", model=tiny_path, device="cpu", lora={"r": 4, "target_modules": ["q_proj"]}, seed=0)
    samples, _ = constant_task("12", seed=1)
    call("train", samples=samples, steps=3, lr=1e-2, seed=0)
    q_only = call("save_adapter", path=str(tmp_path / "q"))["path"]
    call("load_model", model=tiny_path, device="cpu", lora={"r": 4}, seed=0)  # every linear layer
    call("train", samples=samples, steps=3, lr=1e-2, seed=1)
    before = _adapter_state()
    error = call_error("load_adapter", {"path": q_only})
    assert error["type"] == "AdapterError" and "missing" in error["message"]
    after = _adapter_state()
    assert all(torch.equal(after[k], before[k]) for k in before)
    call("unload")


def test_embedding_lora_is_kept_in_slots_and_checked_on_load(tiny_path: str, tmp_path: Path) -> None:
    """LoRA on the embedding names its tensors ``lora_embedding_A.default`` (the adapter name ends the key)."""
    with_embedding = {"r": 4, "target_modules": ["q_proj", "embed_tokens"]}
    call("load_model", model=tiny_path, device="cpu", lora={"r": 4, "target_modules": ["q_proj"]}, seed=0)
    q_only = call("save_adapter", path=str(tmp_path / "q"))["path"]
    call("load_model", model=tiny_path, device="cpu", lora=with_embedding, seed=0)
    samples, tests = constant_task("12", seed=1)
    call("train", samples=samples, steps=5, lr=1e-2, seed=0)
    live = call("generate", prompts=tests, max_new_tokens=4)["outputs"]
    call("keep_adapter", slot=0)
    call("reset_adapter")
    assert call("generate", prompts=tests, max_new_tokens=4, adapters=[0] * len(tests))["outputs"] == live
    error = call_error("load_adapter", {"path": q_only})
    assert error["type"] == "AdapterError" and "lora_embedding_A" in error["message"]
    call("unload")
