"""What the compiled paths share: ``torch.compile``'d callables kept per model, with code objects of their own.

Dynamo keeps compiled graphs, and its recompile budget, per *code object*. A closure made afresh per model or per
bucket still shares one code object with every other copy, so their graphs would pile up in one cache and evict each
other. :func:`own_code` gives each compiled callable a code object of its own, whose graphs go when it goes.
The callables are kept in a plain attribute of the model (not a submodule, parameter or buffer), so ``state_dict``
and PEFT never see them, and :func:`release` drops them with the memory they hold (e.g. before an unload).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from .errors import CompileError

_ATTR = "_arc_ttft_compiled"
RECOMPILE_LIMIT = 64
"""Graphs Dynamo keeps per code object here (its default, 8, is for code that recompiles by mistake). Changing the
adapter layout (a new kept slot) recompiles the training graphs; beyond the limit Dynamo would silently run eager."""


def own_code(fn: Callable) -> Callable:
    """``fn`` with a code object of its own (see the module docstring)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def compiled(fn: Callable, what: str, **options: Any) -> Callable:
    """``torch.compile(fn)`` with a code object of its own (:func:`own_code`). A graph that cannot be compiled is a
    :class:`CompileError` that says how to go on (``what``: the option that asked for compiling)."""
    import torch
    from torch._dynamo.exc import BackendCompilerFailed

    run = torch.compile(own_code(fn), **options)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return run(*args, **kwargs)
        except BackendCompilerFailed as e:
            inner = getattr(e, "inner_exception", None) or e
            raise CompileError(
                f"torch.compile could not compile the graph for {what}: {type(inner).__name__}: "
                f"{str(inner).splitlines()[0] if str(inner) else ''} On a CPU, inductor needs a working C++ compiler "
                f"(e.g. apt-get install g++); or turn {what} off."
            ) from e

    return call


def allow_recompiles() -> None:
    """Raise Dynamo's per-code-object recompile limit to :data:`RECOMPILE_LIMIT` (this process is the engine's)."""
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # renamed in torch 2.6
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))


def graphs_compiled() -> int:
    """How many graphs Dynamo has compiled in this process so far (rises when a step compiles)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def counts() -> dict[str, int] | None:
    """What compiling did in this process: graphs compiled, graph breaks, and the CUDA-graph captures inductor
    skipped (a compiled decode then runs without CUDA graphs, slower, with only a log line). ``None`` before
    anything compiled (Dynamo not imported: asking would import it)."""
    import sys

    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return None
    c = utils.counters
    return {
        "graphs": int(c["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(c["graph_break"].values())),
        "cudagraph_skips": int(c["inductor"]["cudagraph_skips"]),
    }


def kept(model: Any) -> dict[str, Any]:
    """The compiled things kept for ``model``, by owner (``"static_decode"``, ``"train"``); created empty."""
    store = model.__dict__.get(_ATTR)
    if store is None:
        store = {}
        object.__setattr__(model, _ATTR, store)
    return store


def release(model: Any) -> list[str]:
    """Drop everything compiled for ``model``; returns the owners that had something."""
    store = model.__dict__.pop(_ATTR, None)
    return sorted(store) if store else []
