"""The Ray pool driver (arc_ttft.ray_pool): one local cluster, one worker, calls, a kill and the restart."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytest.importorskip("ray")

from arc_ttft import ray_pool  # noqa: E402

from conftest import LORA  # noqa: E402


def pool(pool_method: str, **payload: Any) -> Any:
    reply = json.loads(ray_pool.dispatch(pool_method, json.dumps(payload)))
    assert reply["ok"], reply
    return reply["result"]


def run(actor: int, method: str, payload: Any = None, incarnation: str | None = None) -> dict[str, Any]:
    """Submits one call and waits for it (up to 120 s)."""
    call_id = pool(
        "pool_submit",
        actor=actor,
        method=method,
        payload_json=json.dumps(payload or {}),
        incarnation=incarnation,
    )["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for item in pool("pool_wait", timeout_s=0.5)["finished"]:
            if item["id"] == call_id:
                return item
    pytest.fail(f"{method} did not finish")


def loaded_call() -> dict[str, Any]:
    """``_loaded`` on worker 0, asked again while Ray reports it (re)starting: on a busy machine the first answer
    can come before the worker's constructor has finished, or from an incarnation Ray is replacing."""
    # The same policy as PoolEngine.recover (src/ttft/pool.ts): Ray restarts a worker that died (max_restarts -1),
    # so a few ActorDiedErrors are retried too; many in a row mean it cannot come up.
    deadline = time.monotonic() + 180
    died = 0
    item = run(0, "_loaded")
    while item.get("died") and time.monotonic() < deadline:
        assert item["error_type"] in ("ActorUnavailableError", "ActorDiedError"), item
        died += item["error_type"] == "ActorDiedError"
        assert died <= 20, item
        time.sleep(0.5)
        item = run(0, "_loaded")
    assert not item.get("died"), item
    return item


def test_pool_calls_kill_and_restart(tiny_path: str) -> None:
    info = pool(
        "pool_start",
        address="local",
        workers=1,
        local_num_cpus=1,
        load={"model": tiny_path, "device": "cpu", "lora": LORA, "seed": 0},
    )
    try:
        assert info["workers"] == 1 and info["started_local"] is True and info["num_gpus"] == 0
        loaded = loaded_call()
        envelope = json.loads(loaded["result"]["envelope"])
        assert envelope["ok"], envelope
        first = loaded["result"]["incarnation"]
        counted = run(0, "count_tokens", {"texts": ["ab\n"]}, first)
        assert json.loads(counted["result"]["envelope"])["result"]["counts"] == [3]

        # A call in flight when the worker is killed comes back as died; Ray restarts the worker.
        sleep_id = pool("pool_submit", actor=0, method="debug_sleep", payload_json='{"seconds": 30}')["id"]
        time.sleep(1.0)
        pool("pool_kill", actor=0)
        died = None
        deadline = time.monotonic() + 60
        while died is None and time.monotonic() < deadline:
            died = next((i for i in pool("pool_wait", timeout_s=0.5)["finished"] if i["id"] == sleep_id), None)
        assert died is not None and died.get("died") is True

        # The restarted worker has the model again, under a new incarnation; the old one is refused.
        # Calls that reach it while it restarts are refused (ActorUnavailableError): retry.
        again = loaded_call()
        assert json.loads(again["result"]["envelope"])["ok"]
        second = again["result"]["incarnation"]
        assert second != first
        stale = json.loads(run(0, "count_tokens", {"texts": ["a"]}, first)["result"]["envelope"])
        assert stale["ok"] is False and stale["error"]["type"] == "WorkerRestartedError"
    finally:
        assert pool("pool_shutdown")["shut_down"] is True


def test_unknown_pool_payload_is_an_error_envelope() -> None:
    reply = json.loads(ray_pool.dispatch("pool_submit", json.dumps({"actor": 0, "method": "ping"})))
    assert reply["ok"] is False and "not started" in reply["error"]["message"]
