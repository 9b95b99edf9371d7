"""The dispatch protocol: envelopes, typed errors naming fields, and that it never raises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import call, call_error

from arc_ttft import entry
from arc_ttft.entry import dispatch


def test_ping_returns_ok_envelope() -> None:
    reply = json.loads(dispatch("ping", "{}"))
    assert reply["ok"] is True
    assert reply["result"]["pid"] == os.getpid()
    assert {"python", "torch", "transformers", "peft", "cuda_available", "device_count"} <= reply["result"].keys()


def test_empty_or_missing_payload_reads_as_empty_object() -> None:
    assert json.loads(dispatch("ping", ""))["ok"] is True
    assert json.loads(dispatch("ping", None))["ok"] is True
    assert json.loads(dispatch("ping", "null"))["ok"] is True


def test_raising_handler_gives_error_envelope_with_traceback() -> None:
    error = call_error("debug_raise", {"message": "boom"})
    assert error["type"] == "ValueError"
    assert error["message"] == "boom"
    assert "Traceback" in error["traceback"] and "_debug_raise" in error["traceback"]


def test_unknown_method() -> None:
    error = call_error("trian")
    assert error["type"] == "UnknownMethodError"
    assert "'trian'" in error["message"] and "train" in error["message"]


@pytest.mark.parametrize(
    ("method", "payload", "field", "problem"),
    [
        ("train", {"samples": [], "steps": "10"}, "train.steps", "expected an integer"),
        ("train", {"samples": [{"prompt": "a"}], "steps": 1}, "train.samples[0].answer", "is required"),
        ("train", {"samples": [{"prompt": "a", "answer": 3}], "steps": 1}, "train.samples[0].answer", "string"),
        ("train", {"samples": [], "steps": 0}, "train.steps", "must be >= 1"),
        ("generate", {"prompts": ["a"], "max_new_tokens": 4, "topP": 1}, "generate.topP", "unknown field"),
        ("generate", {"prompts": ["a"], "maxNewTokens": 4}, "generate.max_new_tokens", "snake_case"),
        ("generate", {"prompts": [], "max_new_tokens": 4}, "generate.prompts", "must not be empty"),
        ("generate", {"prompts": ["a", 1], "max_new_tokens": 4}, "generate.prompts[1]", "expected a string"),
        ("load_model", {"model": "x", "dtype": "fp8"}, "load_model.dtype", "expected one of"),
        ("load_model", {"model": "x", "lora": {"rank": 8}}, "load_model.lora.rank", "unknown field"),
        ("load_model", {"model": "x", "lora": {"target_modules": 3}}, "load_model.lora.target_modules", "all-linear"),
        ("debug_sleep", {"seconds": True}, "debug_sleep.seconds", "finite number"),
        ("count_tokens", [1, 2], "count_tokens", "expected an object"),
        ("load_model", {"model": "x", "seed": 2**70}, "load_model.seed", "must be <="),
        ("load_model", {"model": "x", "lora": {"alpha": 10**400}}, "load_model.lora.alpha", "finite number"),
        ("load_model", {"model": "x", "lora": {"dropout": 1}}, "load_model.lora.dropout", "below 1"),
        ("generate", {"prompts": ["a"], "max_new_tokens": 10**12}, "generate.max_new_tokens", "must be <="),
        ("generate", {"prompts": ["a"], "max_new_tokens": [10**12]}, "generate.max_new_tokens[0]", "1 to 65536"),
        ("train", {"samples": [], "steps": 1, "batch_size": 10**12}, "train.batch_size", "must be <="),
        ("train", {"samples": [], "steps": 1, "batch_size": 512, "grad_accum": 512}, "train.grad_accum", "× grad_accum"),
        ("generate", {"prompts": ["a"], "max_new_tokens": 1, "batch_size": 2**40}, "generate.batch_size", "must be <="),
        ("train", {"samples": [], "steps": 1, "lr": 1e39}, "train.lr", "must be <="),
        ("save_adapter", {"path": ""}, "save_adapter.path", "must not be empty"),
        ("make_tiny_model", {"path": "x", "hidden_size": 12, "num_heads": 4}, "make_tiny_model.num_heads", "even"),
        (
            "load_model",
            {"model": "x", "dtype": "float16", "lora": {"modules_to_save": ["lm_head"]}},
            "load_model.lora.modules_to_save",
            "turn NaN",
        ),
    ],
)
def test_bad_payload_field_is_a_payload_error_naming_it(method: str, payload: dict, field: str, problem: str) -> None:
    error = call_error(method, payload)
    assert error["type"] == "PayloadError"
    assert error["message"].startswith(f"{field}:"), error["message"]
    assert problem in error["message"]


def test_invalid_json_payload() -> None:
    reply = json.loads(dispatch("ping", "{not json"))
    assert reply["error"]["type"] == "PayloadError"
    assert "not valid JSON" in reply["error"]["message"]


def test_non_string_arguments_never_raise() -> None:
    assert json.loads(dispatch(None, "{}"))["error"]["type"] == "UnknownMethodError"  # type: ignore[arg-type]
    assert json.loads(dispatch("ping", {"a": 1}))["error"]["type"] == "PayloadError"  # type: ignore[arg-type]


def test_methods_needing_a_model_say_so() -> None:
    call("unload")
    error = call_error("generate", {"prompts": ["a"], "max_new_tokens": 2})
    assert error["type"] == "NotLoadedError"
    assert "load_model" in error["message"]


def test_missing_model_path_is_model_not_found(tmp_path) -> None:
    missing = str(tmp_path / "nope")
    error = call_error("load_model", {"model": missing, "device": "cpu"})
    assert error["type"] == "ModelNotFoundError"
    assert missing in error["message"]
    error = call_error("load_model", {"model": str(tmp_path), "device": "cpu"})
    assert error["type"] == "ModelNotFoundError"
    assert "config.json" in error["message"]


def test_a_mistyped_model_path_keeps_the_loaded_model(loaded: dict, tmp_path) -> None:
    error = call_error("load_model", {"model": str(tmp_path / "typo"), "device": "cpu"})
    assert error["type"] == "ModelNotFoundError"
    assert call("status")["loaded"] is True


def test_status_and_unload(loaded: dict) -> None:
    status = call("status")
    assert status["loaded"] is True and status["device"] == "cpu"
    assert status["n_trainable"] == loaded["n_trainable"] > 0
    assert status["memory"]["rss_bytes"] > 0
    assert call("status", reset_peak=True)["loaded"] is True  # a no-op off CUDA
    assert call("unload") == {"unloaded": True}
    assert call("status")["loaded"] is False


def test_non_finite_floats_become_null(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(entry.METHODS, "nan", lambda f: {"losses": [1.0, float("nan"), float("inf")]})
    assert json.loads(dispatch("nan", "{}")) == {"ok": True, "result": {"losses": [1.0, None, None]}}


def test_keyboard_interrupt_still_escapes(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(_f):
        raise KeyboardInterrupt

    monkeypatch.setitem(entry.METHODS, "interrupted", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dispatch("interrupted", "{}")


def test_debug_sleep() -> None:
    assert call("debug_sleep", seconds=0.01) == {"slept": 0.01}


def test_debug_crash_exits_with_the_code() -> None:
    code = "from arc_ttft.entry import dispatch; dispatch('debug_crash', '{\"code\": 7}'); print('survived')"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 7
    assert "survived" not in done.stdout


def test_whole_floats_are_integers_in_arrays_as_in_single_fields() -> None:
    from arc_ttft.errors import PayloadError
    from arc_ttft.payload import Fields

    f = Fields({"n": 2.0, "each": [1.0, None, 3]}, "x")
    assert f.int("n") == 2
    assert f.int_each("each", 3, min=1, nullable=True) == [1, None, 3]
    assert all(type(v) is int for v in f.int_each("each", 3, nullable=True) if v is not None)
    with pytest.raises(PayloadError, match=r"x\.each\[0\]: expected an integer ≥ 2, got 1"):
        Fields({"each": [1.0]}, "x").int_each("each", 1, min=2)
    with pytest.raises(PayloadError, match=r"x\.each\[0\]"):
        Fields({"each": [1.5]}, "x").int_each("each", 1)


def test_max_positions_reads_every_architectures_key() -> None:
    from transformers import GPT2Config, Qwen2Config

    from arc_ttft.model import max_positions

    assert max_positions(GPT2Config(n_positions=1024)) == 1024
    assert max_positions(Qwen2Config(max_position_embeddings=32768)) == 32768

    class NoBound:
        hidden_size = 8

    assert max_positions(NoBound()) is None
