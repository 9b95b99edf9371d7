"""Shared fixtures: one tiny model per session, built through the real dispatch protocol."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

# One thread: the tiny model gains nothing from more, and the shared CPUs are then less contended.
torch.set_num_threads(1)

# The test process must not get PR_SET_PDEATHSIG (it fires when the *thread* that spawned pytest exits);
# the watchdog itself is tested in a child process (test_watchdog.py).
os.environ.setdefault("ARC_TTFT_WATCHDOG", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arc_ttft.entry import dispatch  # noqa: E402

# LoRA settings that learn the constant-grid task reliably (8/8 model × data seeds at 100 steps, 7/8 at 60).
LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "modules_to_save": ["lm_head", "embed_tokens"]}


def call(method: str, **payload: Any) -> dict[str, Any]:
    """Dispatch and return the result, failing the test with the Python traceback on an error envelope."""
    reply = json.loads(dispatch(method, json.dumps(payload)))
    if not reply["ok"]:
        pytest.fail(f"{method} failed: {reply['error']['type']}: {reply['error']['traceback']}")
    return reply["result"]


def call_error(method: str, payload: Any = None) -> dict[str, Any]:
    """Dispatch a call that must fail; return its error object."""
    reply = json.loads(dispatch(method, json.dumps(payload if payload is not None else {})))
    assert reply["ok"] is False, reply
    return reply["error"]


def grid_prompt(rng: random.Random, h: int = 3, w: int = 3) -> str:
    rows = ["".join(str(rng.randint(0, 9)) for _ in range(w)) for _ in range(h)]
    return "I\n" + "\n".join(rows) + "\nO\n"


def constant_task(answer: str, n_train: int = 16, n_test: int = 3, seed: int = 0) -> tuple[list[dict], list[str]]:
    """A task whose answer ignores the input: a random base cannot guess it, an adapter learns it fast."""
    rng = random.Random(seed)
    samples = [{"prompt": grid_prompt(rng), "answer": answer} for _ in range(n_train)]
    return samples, [grid_prompt(rng) for _ in range(n_test)]


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tiny") / "model"
    call("make_tiny_model", path=str(path), seed=0)
    return str(path)


@pytest.fixture()
def loaded(tiny_path: str) -> dict[str, Any]:
    """The tiny model freshly loaded with the test LoRA settings (seed 0)."""
    info = call("load_model", model=tiny_path, device="cpu", lora=LORA, seed=0)
    yield info
    call("unload")
