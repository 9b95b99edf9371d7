"""A pool of engine workers on Ray, driven from the TypeScript bridge: ``dispatch(method, payload_json) -> str``.

The bridge hosts this module in one Python process (the Ray *driver*). Each Ray actor is one engine, exactly like
the local engine process: it imports :mod:`arc_ttft.entry`, loads the base model once (in its constructor, so a
restart by Ray loads it again), and serves ``entry.dispatch`` calls one at a time. The bridge serves one call at a
time too, so nothing here blocks: calls are submitted (``pool_submit`` returns an id at once) and collected
(``pool_wait`` returns whatever finished within a short timeout).

=================== ============================================================== ==================================
method              payload (defaults)                                             result
=================== ============================================================== ==================================
pool_start          address ('local' | 'auto' | a Ray address), workers (null =     address, started_local, workers,
                    one per GPU, else per CPU), num_cpus (1), num_gpus (null = 1   num_cpus, num_gpus, cluster
                    when the cluster has GPUs, else 0), local_num_cpus (null),     {CPU, GPU}, ray
                    max_restarts (-1), load {load_model payload}, env_vars {},
                    ship_code (null = when connecting to a cluster),
                    object_store_memory (null)
pool_submit         actor, method, payload_json, incarnation (null = any)          id
pool_wait           timeout_s (0.1)                                                finished [{id, actor, result |
                                                                                   died, error_type, message}],
                                                                                   pending
pool_kill           actor, restart (true)                                          {}
pool_shutdown       {}                                                             shut_down (bool)
(anything else)     as :func:`arc_ttft.entry.dispatch` in the driver process       (e.g. ``make_tiny_model``, ``ping``)
=================== ============================================================== ==================================

Each finished call is ``{"id", "actor", "result": {"incarnation", "envelope"}}`` (``envelope`` is the JSON string
``entry.dispatch`` returned) or ``{"id", "actor", "died": true, "error_type", "message"}`` when the actor died (or
could not be reached) before answering: ``ActorUnavailableError`` while Ray restarts it (try again later),
``ActorDiedError`` once it is gone for good. ``incarnation`` changes each time Ray (re)starts an actor: a call
that names another incarnation than the actor's current one is refused with a ``WorkerRestartedError`` envelope
instead of running on a fresh adapter. The special method ``_loaded`` returns the constructor's ``load_model`` envelope.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any

from . import entry  # also starts the parent watchdog: the driver dies with the Node host
from .errors import PayloadError
from .payload import Fields

__all__ = ["dispatch"]


class RayMissingError(RuntimeError):
    """The ``ray`` package is not installed in this interpreter."""


class _Pool:
    def __init__(self) -> None:
        self.ray: Any = None
        self.started_local = False
        self.actors: list[Any] = []
        self.actor_options: dict[str, Any] = {}
        self.load_json = "{}"
        self.worker_class: Any = None
        self.pending: dict[Any, tuple[int, int]] = {}  # ObjectRef -> (call id, actor index)
        self.next_id = 1


_pool = _Pool()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise RayMissingError(
            "the ray package is not installed in this Python; install it with `arc-ttft setup --ray` "
            "(or pip install -r python/requirements-ray.txt)"
        ) from e
    return ray


def _worker_class(ray: Any) -> Any:
    @ray.remote
    class ArcTtftWorker:
        """One engine: the model is loaded here, so a restart by Ray reloads it."""

        def __init__(self, load_json: str) -> None:
            import uuid

            self.incarnation = uuid.uuid4().hex
            self.load = entry.dispatch("load_model", load_json)

        def call(self, method: str, payload_json: str, incarnation: str | None) -> dict[str, Any]:
            if method == "_loaded":
                envelope = self.load
            elif incarnation is not None and incarnation != self.incarnation:
                envelope = json.dumps(
                    {
                        "ok": False,
                        "error": {
                            "type": "WorkerRestartedError",
                            "message": "the Ray worker restarted since this task began (its adapter is gone)",
                            "traceback": "",
                        },
                    }
                )
            else:
                envelope = entry.dispatch(method, payload_json)
            return {"incarnation": self.incarnation, "envelope": envelope}

    return ArcTtftWorker


def _new_actor() -> Any:
    if _pool.worker_class is None:
        _pool.worker_class = _worker_class(_pool.ray)
    return _pool.worker_class.options(**_pool.actor_options).remote(_pool.load_json)


def _start(f: Fields) -> dict[str, Any]:
    address = f.str("address", "local")
    workers = f.int("workers", None, min=1)
    num_cpus = f.float("num_cpus", 1.0, min=0.0)
    num_gpus = f.float("num_gpus", None, min=0.0)
    local_num_cpus = f.int("local_num_cpus", None, min=1)
    max_restarts = f.int("max_restarts", -1, min=-1)
    load = f.raw("load", {})
    env_vars = f.raw("env_vars", {})
    ship_code = f.bool("ship_code", None)
    object_store_memory = f.int("object_store_memory", None, min=1)
    f.finish()
    if not isinstance(load, dict):
        raise PayloadError("pool_start.load", "expected an object (the load_model payload)")
    if not isinstance(env_vars, dict) or not all(isinstance(v, str) for v in env_vars.values()):
        raise PayloadError("pool_start.env_vars", "expected an object of strings")
    if _pool.ray is not None:
        raise RuntimeError("the pool is already started in this process")

    ray = _import_ray()
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    # A cluster's nodes may not have this package: ship it with the job. Ray takes local folders in
    # py_modules only at the job level (ray.init), not in an actor's runtime_env.
    package_dir = os.path.dirname(os.path.abspath(__file__))

    def job(shipping_default: bool) -> dict[str, Any]:
        ship = ship_code if ship_code is not None else shipping_default
        return {"runtime_env": {"py_modules": [package_dir]}} if ship else {}

    started_local = False
    if address in ("local", "auto"):
        connected = False
        if address == "auto":
            try:
                ray.init(address="auto", **job(True), **init)
                connected = True
            except ConnectionError:
                connected = False
        if not connected:
            cpus = os.cpu_count() or 1
            if workers is not None and (num_gpus or 0) == 0:
                cpus = max(cpus, int(workers * num_cpus + 0.999))
            # address="local": always a new private cluster, even where `ray start` left a cluster file behind.
            ray.init(
                address="local",
                num_cpus=local_num_cpus or cpus,
                **({"object_store_memory": object_store_memory} if object_store_memory else {}),
                **job(False),
                **init,
            )
            started_local = True
    else:
        ray.init(address=address, **job(True), **init)
    _pool.ray = ray
    _pool.started_local = started_local

    resources = ray.cluster_resources()
    cluster = {"CPU": float(resources.get("CPU", 0)), "GPU": float(resources.get("GPU", 0))}
    gpus = num_gpus if num_gpus is not None else (1.0 if cluster["GPU"] > 0 else 0.0)
    if workers is None:
        if gpus > 0:
            workers = max(1, int(cluster["GPU"] // gpus))
        else:
            workers = max(1, int(cluster["CPU"] // max(num_cpus, 1e-9)))

    env = {"ARC_TTFT_WATCHDOG": "poll", "PYTHONUNBUFFERED": "1", **env_vars}
    if started_local:
        # Workers on this machine import arc_ttft from where the driver has it, whatever their working folder
        # (a joined cluster gets the package shipped with the job instead).
        parent = os.path.dirname(package_dir)
        inherited = env.get("PYTHONPATH", os.environ.get("PYTHONPATH"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (parent, inherited) if p)
    runtime_env: dict[str, Any] = {"env_vars": env}
    _pool.actor_options = {
        "num_cpus": num_cpus,
        "num_gpus": gpus,
        "max_restarts": max_restarts,
        "max_task_retries": 0,  # a lost call is retried by the scheduler, on a worker whose state it knows
        "runtime_env": runtime_env,
    }
    _pool.load_json = json.dumps(load)
    _pool.actors = [_new_actor() for _ in range(workers)]
    return {
        "address": ray.get_runtime_context().gcs_address,
        "started_local": started_local,
        "workers": workers,
        "num_cpus": num_cpus,
        "num_gpus": gpus,
        "cluster": cluster,
        "ray": ray.__version__,
    }


def _started() -> Any:
    if _pool.ray is None:
        raise RuntimeError("the pool is not started: call pool_start first")
    return _pool.ray


def _actor_index(f: Fields) -> int:
    k = f.int("actor", min=0)
    if k >= len(_pool.actors):
        raise PayloadError(f.path("actor"), f"no worker {k} (the pool has {len(_pool.actors)})")
    return k


def _submit(f: Fields) -> dict[str, Any]:
    _started()
    k = _actor_index(f)
    method = f.str("method")
    payload_json = f.str("payload_json", "{}")
    incarnation = f.str("incarnation", None)
    f.finish()
    ref = _pool.actors[k].call.remote(method, payload_json, incarnation)
    call_id = _pool.next_id
    _pool.next_id += 1
    _pool.pending[ref] = (call_id, k)
    return {"id": call_id}


def _wait(f: Fields) -> dict[str, Any]:
    ray = _started()
    timeout = f.float("timeout_s", 0.1, min=0.0)
    f.finish()
    refs = list(_pool.pending)
    if not refs:
        return {"finished": [], "pending": 0}
    ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
    if ready:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    finished: list[dict[str, Any]] = []
    for ref in ready:
        call_id, k = _pool.pending.pop(ref)
        try:
            finished.append({"id": call_id, "actor": k, "result": ray.get(ref)})
        except ray.exceptions.RayError as e:  # the actor died, was killed, or is unreachable
            finished.append(
                {"id": call_id, "actor": k, "died": True, "error_type": type(e).__name__, "message": str(e)}
            )
    return {"finished": finished, "pending": len(_pool.pending)}


def _kill(f: Fields) -> dict[str, Any]:
    ray = _started()
    k = _actor_index(f)
    restart = f.bool("restart", True)
    f.finish()
    ray.kill(_pool.actors[k], no_restart=not restart)
    return {}


def _shutdown(f: Fields) -> dict[str, Any]:
    f.finish()
    ray = _pool.ray
    if ray is None:
        return {"shut_down": False}
    for actor in _pool.actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 — already gone
            pass
    _pool.actors = []
    _pool.pending.clear()
    _pool.worker_class = None
    # Disconnects from a cluster; stops a local one this process started.
    ray.shutdown()
    _pool.ray = None
    return {"shut_down": True}


_METHODS = {
    "pool_start": _start,
    "pool_submit": _submit,
    "pool_wait": _wait,
    "pool_kill": _kill,
    "pool_shutdown": _shutdown,
}


def dispatch(method: str, payload_json: str | None = "{}") -> str:
    """Pool methods (see the module docstring); any other method runs in this process as ``entry.dispatch``."""
    handler = _METHODS.get(method) if isinstance(method, str) else None
    if handler is None:
        return entry.dispatch(method, payload_json)
    try:
        payload = json.loads(payload_json or "{}")
        return json.dumps({"ok": True, "result": handler(Fields(payload, method))})
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 — errors are data for the bridge
        error = {
            "type": type(exc).__name__,
            "message": str(exc) or repr(exc),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
        return json.dumps({"ok": False, "error": error})

