"""The generation-backend contract, checked for every backend: ``transformers`` here, ``vllm`` where it is installed
(a CUDA machine; ``pip install vllm``) — its cases skip with the reason otherwise.

Each backend is driven through :mod:`arc_ttft.backend`'s interface on a tiny random model with three saved
adapters: ``A`` and ``B`` (random LoRA weights, so they change the greedy outputs) and ``Z`` (a fresh LoRA, B = 0,
so it must give what the base model gives). The last tests check the wiring through ``dispatch``.
"""

from __future__ import annotations

import json
import os
import random
import string
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import call, call_error, grid_prompt

from arc_ttft import lora
from arc_ttft import model as model_mod
from arc_ttft.backend import AdapterRef, Backend, BackendContext, GeneratedText, TransformersBackend, get_backend
from arc_ttft.entry import dispatch
from arc_ttft.errors import BackendUnavailableError
from arc_ttft.generate import GenerateConfig
from arc_ttft.tiny import make_tiny_model
from arc_ttft.vllm_backend import import_vllm, to_generated

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear", "modules_to_save": None}
MAX_NEW = 12


def _has_vllm() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


HAS_VLLM = _has_vllm()
NEEDS_VLLM = pytest.mark.skipif(
    not HAS_VLLM or not torch.cuda.is_available(),
    reason="vLLM backend: needs `pip install vllm` and a CUDA GPU (optional backend)",
)
BACKENDS = ["transformers", pytest.param("vllm", marks=NEEDS_VLLM)]


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    # head_dim 64: a size every vLLM attention kernel supports (the default tiny model's 16 is not).
    path = tmp_path_factory.mktemp("contract") / "model"
    make_tiny_model(str(path), hidden_size=128, num_heads=2, num_kv_heads=2, seed=3)
    return str(path)


def _device(name: str) -> torch.device:
    return torch.device("cuda" if name == "vllm" else "cpu")


def _peft(tiny: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any, lora.AdapterState]:
    base, tokenizer = model_mod.load_base(tiny, dtype, device)
    kwargs = {"r": LORA["r"], "alpha": LORA["alpha"], "dropout": LORA["dropout"]}
    peft_model, state = lora.attach_lora(
        base, **kwargs, target_modules="all-linear", modules_to_save=None, adapter_init=None, seed=0
    )
    return peft_model, tokenizer, state


@pytest.fixture(scope="module")
def adapters(tiny: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Folders of adapters A and B (random LoRA B matrices) and Z (fresh: B = 0, the base model's function)."""
    root = tmp_path_factory.mktemp("adapters")
    peft_model, _, state = _peft(tiny, torch.device("cpu"), torch.float32)
    folders = {"Z": lora.save_adapter(peft_model, str(root / "Z"))}
    for name, seed in (("A", 1), ("B", 2)):
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for pname, p in peft_model.named_parameters():
                if "lora_B" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        folders[name] = lora.save_adapter(peft_model, str(root / name))
        lora.reset_adapter(peft_model, state)
    return folders


# Prefix caching off: a repeated prompt must take the same kernels for the determinism checks.
VLLM_TEST_OPTIONS = {"gpu_memory_utilization": 0.3, "enforce_eager": True, "prefix_caching": False}


def _load(name: str, tiny: str, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Backend:
    device = device or _device(name)
    peft_model, tokenizer, state = _peft(tiny, device, dtype)
    backend = get_backend(name)
    ctx = BackendContext(
        model_path=tiny,
        model=peft_model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        lora=state.config,
        max_model_len=512,
        seed=0,
        options=VLLM_TEST_OPTIONS if name == "vllm" else {},
    )
    backend.load(ctx)
    return backend


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tiny: str) -> Backend:
    b = _load(request.param, tiny, torch.bfloat16 if request.param == "vllm" else torch.float32)
    yield b
    b.close()


@pytest.fixture(scope="module")
def refs(adapters: dict[str, str]) -> dict[str, AdapterRef]:
    return {k: AdapterRef(name=f"test-{k}", id=i + 1, path=p) for i, (k, p) in enumerate(sorted(adapters.items()))}


def _prompts(n: int = 6, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [grid_prompt(rng, rng.randint(1, 4), rng.randint(1, 5)) for _ in range(n)]


def _greedy(**kw: Any) -> GenerateConfig:
    return GenerateConfig(max_new_tokens=kw.pop("max_new_tokens", MAX_NEW), **kw)


def _texts(outs: tuple[GeneratedText, ...]) -> list[str]:
    return [o.text for o in outs]


def _tol(backend: Backend) -> float:
    return 2e-2 if backend.name == "vllm" else 1e-4  # bf16 kernels on the GPU, float32 on the CPU


# --------------------------------------------------------------------------------------------------- the contract


def test_greedy_decoding_is_deterministic(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    prompts = _prompts()
    first = backend.generate(prompts, _greedy(), refs["A"]).outputs
    second = backend.generate(prompts, _greedy(), refs["A"]).outputs
    assert _texts(second) == _texts(first)
    assert [o.n_tokens for o in second] == [o.n_tokens for o in first]
    assert [o.finish_reason for o in second] == [o.finish_reason for o in first]
    assert [o.mean_logprob for o in second] == pytest.approx([o.mean_logprob for o in first], abs=1e-5)


def test_each_output_has_text_tokens_and_a_sequence_logprob(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    prompts = _prompts()
    result = backend.generate(prompts, _greedy(), refs["A"])
    assert len(result.outputs) == len(prompts)
    assert result.tokens == sum(o.n_tokens for o in result.outputs)
    for o in result.outputs:
        assert isinstance(o.text, str) and "<eos>" not in o.text
        assert 1 <= o.n_tokens <= MAX_NEW
        assert o.finish_reason in ("eos", "length")  # no stop strings asked for
        if o.finish_reason == "length":
            assert o.n_tokens == MAX_NEW
        assert o.mean_logprob <= 0
        assert o.logprob == pytest.approx(o.mean_logprob * o.n_tokens, abs=1e-4)
        assert o.as_json() == {
            "text": o.text,
            "n_tokens": o.n_tokens,
            "mean_logprob": o.mean_logprob,
            "finish_reason": o.finish_reason,
        }


def test_per_token_ids_and_logprobs_sum_to_the_sequence(
    backend: Backend, refs: dict[str, AdapterRef], tiny: str
) -> None:
    from transformers import AutoTokenizer

    result = backend.generate(_prompts(), _greedy(), refs["A"])
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    for o in result.outputs:
        assert o.token_ids is not None and o.token_logprobs is not None
        assert len(o.token_ids) == len(o.token_logprobs) == o.n_tokens
        assert all(lp <= 1e-6 for lp in o.token_logprobs)
        assert sum(o.token_logprobs) == pytest.approx(o.logprob, abs=1e-5)
        assert o.mean_logprob == pytest.approx(sum(o.token_logprobs) / o.n_tokens, abs=1e-5)
        assert tokenizer.decode(list(o.token_ids), skip_special_tokens=True) == o.text
        assert (o.token_ids[-1] == tokenizer.eos_token_id) == (o.finish_reason == "eos")


def test_stop_string_ends_the_text_before_it(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    free = backend.generate(_prompts(12, seed=1), _greedy(), refs["A"]).outputs
    # A prompt whose free text has a plain character after its start, to stop at.
    index, cut = next(
        (i, k) for i, o in enumerate(free) for k in range(1, len(o.text)) if o.text[k] in string.printable
    )
    text = free[index].text
    (o,) = backend.generate([_prompts(12, seed=1)[index]], _greedy(stop=(text[cut],)), refs["A"]).outputs
    assert o.finish_reason == "stop"
    assert o.text == text[: text.index(text[cut])]
    assert 1 <= o.n_tokens <= free[index].n_tokens  # the token that completed the stop string counts
    # A longer stop string that never occurs changes nothing.
    (same,) = backend.generate([_prompts(12, seed=1)[index]], _greedy(stop=("never occurs",)), refs["A"]).outputs
    assert (same.text, same.n_tokens, same.finish_reason) == (text, free[index].n_tokens, free[index].finish_reason)


def test_switching_adapters_gives_each_its_own_outputs(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    prompts = _prompts()
    base = _texts(backend.generate(prompts, _greedy(), None).outputs)
    a = _texts(backend.generate(prompts, _greedy(), refs["A"]).outputs)
    b = _texts(backend.generate(prompts, _greedy(), refs["B"]).outputs)
    assert a != b
    assert base not in (a, b)
    assert _texts(backend.generate(prompts, _greedy(), refs["A"]).outputs) == a  # switching back
    assert _texts(backend.generate(prompts, _greedy(), None).outputs) == base  # the base is untouched
    assert _texts(backend.generate(prompts, _greedy(), refs["B"]).outputs) == b


@pytest.mark.skipif("merge" not in GenerateConfig.__dataclass_fields__, reason="GenerateConfig has no merge")
def test_merge_hint_changes_no_output(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    prompts = _prompts()
    for ref in (refs["A"], None, refs["B"], None):
        plain = backend.generate(prompts, _greedy(), ref).outputs
        merged = backend.generate(prompts, _greedy(merge=True), ref).outputs
        assert _texts(merged) == _texts(plain)


def test_fresh_adapter_gives_the_base_models_outputs(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    prompts = _prompts()
    base = backend.generate(prompts, _greedy(), None).outputs
    zero = backend.generate(prompts, _greedy(), refs["Z"]).outputs
    assert _texts(zero) == _texts(base)
    assert [o.mean_logprob for o in zero] == pytest.approx([o.mean_logprob for o in base], abs=_tol(backend))


def test_a_batch_gives_what_each_prompt_gives_alone(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    rng = random.Random(5)
    prompts = [*_prompts(3), grid_prompt(rng, 1, 1), grid_prompt(rng, 5, 4), "x", grid_prompt(rng, 2, 7)]
    assert len({len(p) for p in prompts}) > 3
    batched = backend.generate(prompts, _greedy(), refs["B"]).outputs
    single = [backend.generate([p], _greedy(), refs["B"]).outputs[0] for p in prompts]
    assert _texts(batched) == _texts(tuple(single))
    assert [o.n_tokens for o in batched] == [o.n_tokens for o in single]
    assert [o.mean_logprob for o in batched] == pytest.approx([o.mean_logprob for o in single], abs=_tol(backend))


def test_a_mixed_batch_gives_each_adapter_its_own_outputs(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    """Several tasks in one batch: a kept copy of adapter A and the live adapter B, rows interleaved."""
    prompts = _prompts()

    def live(name: str) -> AdapterRef:  # the engine's current adapter as the backend takes it
        return refs[name] if backend.needs_adapter_folder else AdapterRef(name=f"live-{name}", id=refs[name].id)

    a = backend.generate(prompts, _greedy(), refs["A"]).outputs
    kept = backend.keep(live("A"), 2)
    assert kept.slot == 2
    b = backend.generate(prompts, _greedy(), refs["B"]).outputs
    assert _texts(a) != _texts(b)
    mixed = backend.generate_mixed([p for p in prompts for _ in (0, 1)], _greedy(), [kept, live("B")] * len(prompts))
    want = tuple(o for pair in zip(a, b, strict=True) for o in pair)
    assert _texts(mixed.outputs) == _texts(want)
    assert [o.n_tokens for o in mixed.outputs] == [o.n_tokens for o in want]
    assert [o.mean_logprob for o in mixed.outputs] == pytest.approx([o.mean_logprob for o in want], abs=_tol(backend))
    assert mixed.tokens == sum(o.n_tokens for o in want)


def test_sampling_is_seeded(backend: Backend, refs: dict[str, AdapterRef]) -> None:
    prompts = ["I\n1\nO\n", "I\n1\nO\n", "I\n22\nO\n"]  # the same prompt twice must not draw the same sample
    cfg = {"max_new_tokens": 16, "do_sample": True, "temperature": 1.5}
    first = backend.generate(prompts, _greedy(**cfg, seed=1), refs["A"]).outputs
    assert _texts(backend.generate(prompts, _greedy(**cfg, seed=1), refs["A"]).outputs) == _texts(first)
    assert _texts(backend.generate(prompts, _greedy(**cfg, seed=2), refs["A"]).outputs) != _texts(first)
    assert first[0].text != first[1].text


# --------------------------------------------------------------------------------------------------- vLLM specifics


def test_vllm_output_mapping_follows_the_contract() -> None:
    # vLLM says "stop" for an EOS (stop_reason None, or the id when it came from stop_token_ids) and for a stop string.
    eos = to_generated("12", [5, 6, 2], [-0.1, -0.2, -0.3], "stop", None)
    assert (eos.finish_reason, eos.n_tokens, eos.token_ids) == ("eos", 3, (5, 6, 2))
    assert eos.mean_logprob == pytest.approx(-0.2) and eos.logprob == pytest.approx(-0.6)
    assert to_generated("12", [5, 6, 2], [-0.1, -0.2, -0.3], "stop", 2).finish_reason == "eos"
    stop = to_generated("1", [5, 3], [-0.5, -0.5], "stop", "\n")
    assert (stop.finish_reason, stop.text, stop.n_tokens) == ("stop", "1", 2)
    assert to_generated("123", [5, 6, 7], [-1.0, -1.0, -1.0], "length", None).finish_reason == "length"
    with pytest.raises(RuntimeError, match="abort"):
        to_generated("", [], [], "abort", None)
    with pytest.raises(RuntimeError, match="log-probs"):
        to_generated("1", [5, 6], [-1.0], "length", None)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_without_vllm_choosing_it_says_how_to_install() -> None:
    for attempt in (import_vllm, lambda: get_backend("vllm")):
        with pytest.raises(BackendUnavailableError) as info:
            attempt()
        message = str(info.value)
        assert "not installed" in message
        assert f"{sys.executable} -m pip install vllm" in message
        assert "backend 'transformers'" in message


@NEEDS_VLLM
def test_vllm_greedy_matches_transformers_on_the_same_adapter(tiny: str, refs: dict[str, AdapterRef]) -> None:
    prompts = _prompts(12)
    ours = _load("transformers", tiny, torch.bfloat16, torch.device("cuda"))
    try:
        expected = _texts(ours.generate(prompts, _greedy(), refs["A"]).outputs)
    finally:
        ours.close()
    vllm_backend = _load("vllm", tiny, torch.bfloat16)
    try:
        got = _texts(vllm_backend.generate(prompts, _greedy(), refs["A"]).outputs)
    finally:
        vllm_backend.close()
    # bf16 kernels differ; a near-tie may break the other way, so most (not all) must agree.
    assert sum(g == e for g, e in zip(got, expected, strict=True)) >= len(prompts) * 3 // 4


# --------------------------------------------------------------------------------------------------- entry wiring


def test_entry_default_and_explicit_transformers_backend_agree(tiny: str) -> None:
    prompts = _prompts()
    outs = []
    for extra in ({}, {"backend": "transformers"}, {"backend": None}):
        info = call("load_model", model=tiny, device="cpu", lora=LORA, seed=0, **extra)
        assert info["backend"] == "transformers"
        assert call("status")["backend"] == "transformers"
        outs.append(call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"])
    call("unload")
    assert outs[0] == outs[1] == outs[2]
    assert set(outs[0][0]) == {"text", "n_tokens", "mean_logprob", "finish_reason"}


def test_entry_generate_follows_the_adapter_after_each_change(tiny: str, adapters: dict[str, str]) -> None:
    prompts = _prompts()
    call("load_model", model=tiny, device="cpu", lora=LORA, seed=0)
    try:
        fresh = call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"]
        call("load_adapter", path=adapters["A"])
        with_a = call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"]
        call("reset_adapter")
        again = call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"]
    finally:
        call("unload")
    assert with_a != fresh and again == fresh


def test_entry_rejects_unknown_backend_and_misplaced_options(tiny: str) -> None:
    error = call_error("load_model", {"model": tiny, "device": "cpu", "backend": "tgi"})
    assert error["type"] == "PayloadError" and "load_model.backend" in error["message"]
    error = call_error("load_model", {"model": tiny, "device": "cpu", "vllm": {"gpu_memory_utilization": 0.4}})
    assert error["type"] == "PayloadError" and "load_model.vllm" in error["message"]
    error = call_error("load_model", {"model": tiny, "backend": "vllm", "vllm": {"gpu_memory_utilization": 2}})
    assert error["type"] == "PayloadError" and "gpu_memory_utilization" in error["message"]


def test_entry_rejects_vllm_with_reduced_vocabulary_or_modules_to_save(tiny: str) -> None:
    # Checked before vLLM is imported: the same answer whether or not it is installed.
    reduce = {"keep_texts": ["I\nO\n"], "keep_chars": "0123456789\n"}
    error = call_error("load_model", {"model": tiny, "backend": "vllm", "reduce_vocab": reduce})
    assert error["type"] == "PayloadError" and "load_model.reduce_vocab" in error["message"]
    lora_mts = {**LORA, "modules_to_save": ["lm_head"]}
    error = call_error("load_model", {"model": tiny, "backend": "vllm", "lora": lora_mts})
    assert error["type"] == "PayloadError" and "modules_to_save" in error["message"]
    lora_head = {**LORA, "target_modules": ["q_proj", "embed_tokens"]}
    error = call_error("load_model", {"model": tiny, "backend": "vllm", "lora": lora_head})
    assert error["type"] == "PayloadError" and "load_model.lora.target_modules" in error["message"]


def test_vllm_refuses_adapters_it_would_refuse_or_misread() -> None:
    # An adapter_init folder can bring any of these; vLLM reads only r, alpha and the targets.
    from peft import LoraConfig

    from arc_ttft.vllm_backend import unsupported_lora

    assert unsupported_lora(LoraConfig(r=8, target_modules=["q_proj", "v_proj"])) == []
    assert unsupported_lora(LoraConfig(r=8, target_modules="all-linear")) == []
    problems = unsupported_lora(
        LoraConfig(
            r=8,
            target_modules=["q_proj", "lm_head"],
            use_dora=True,
            bias="lora_only",
            rank_pattern={"q_proj": 4},
            modules_to_save=["embed_tokens"],
        )
    )
    assert problems == [
        "DoRA (use_dora)",
        "a trained bias (bias 'lora_only')",
        "per-module rank_pattern",
        "modules_to_save ['embed_tokens']",
        "LoRA on ['lm_head'] (vLLM serves LoRA on linear layers only)",
    ]


def test_vllm_gpu_share_defaults_to_half_or_what_is_free() -> None:
    from arc_ttft.vllm_backend import gpu_share

    gib = 2**30
    assert gpu_share(None, 70 * gib, 80 * gib) == 0.5
    assert gpu_share(None, 20 * gib, 80 * gib) == 0.225  # a big training model already holds most of it
    assert gpu_share(0.8, 20 * gib, 80 * gib) == 0.8  # asked for: vLLM says itself if it is not free


def test_vllm_kept_adapter_ids_are_new_each_time_and_fit_int32(tmp_path) -> None:
    # vLLM keeps LoRA ids as int32 in places: slot 63 of a late version must still fit. No vLLM needed: keep()
    # only copies the folder and names the copy.
    from arc_ttft.vllm_backend import VLLMBackend

    backend = object.__new__(VLLMBackend)
    backend._next_kept_id = 1_000_000_000
    live = tmp_path / "v7"
    live.mkdir()
    (live / "adapter_config.json").write_text("{}")
    refs = [backend.keep(AdapterRef(name="arc-ttft-7", id=7, path=str(live)), slot) for slot in (0, 63, 63)]
    ids = [r.id for r in refs]
    assert len(set(ids)) == 3 and all(7 < i < 2**31 for i in ids)
    assert len({r.name for r in refs}) == 3
    assert all((tmp_path / os.path.basename(r.path) / "adapter_config.json").exists() for r in refs)


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_entry_vllm_missing_fails_before_the_loaded_model_is_touched(tiny: str) -> None:
    call("load_model", model=tiny, device="cpu", lora=LORA, seed=0)
    try:
        reply = json.loads(dispatch("load_model", json.dumps({"model": tiny, "backend": "vllm", "lora": LORA})))
        assert reply["ok"] is False
        assert reply["error"]["type"] == "BackendUnavailableError"
        assert "pip install vllm" in reply["error"]["message"]
        status = call("status")
        assert status["loaded"] is True and status["backend"] == "transformers"
        assert call("generate", prompts=["I\n1\nO\n"], max_new_tokens=2)["tokens"] >= 1
    finally:
        call("unload")


@NEEDS_VLLM
def test_entry_vllm_exports_each_adapter_version_once(tiny: str, adapters: dict[str, str]) -> None:
    prompts = _prompts()
    call("load_model", model=tiny, lora=LORA, seed=0, backend="vllm", dtype="bfloat16", vllm={"enforce_eager": True})
    try:
        from arc_ttft import entry

        fresh = call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"]
        first = entry._engine.exported
        assert call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"] == fresh
        assert entry._engine.exported is first  # unchanged adapter: no new export
        call("load_adapter", path=adapters["A"])
        with_a = call("generate", prompts=prompts, max_new_tokens=MAX_NEW)["outputs"]
        assert entry._engine.exported.id != first.id and not Path(first.path).exists()
        assert [o["text"] for o in with_a] != [o["text"] for o in fresh]
    finally:
        call("unload")


class _FolderBackend(TransformersBackend):
    """The transformers loop fed the way vLLM is fed: only saved adapter folders, each ref recorded."""

    needs_adapter_folder = True

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[AdapterRef] = []
        self.released: list[AdapterRef] = []

    def generate(self, prompts: list[str], cfg: GenerateConfig, adapter: AdapterRef | None) -> Any:
        assert adapter is not None and adapter.path is not None and Path(adapter.path).is_dir()
        self.refs.append(adapter)
        return super().generate(prompts, cfg, adapter)

    def release(self, adapter: AdapterRef) -> None:
        self.released.append(adapter)


def test_entry_hands_a_folder_backend_each_adapter_version_once(tiny: str, adapters: dict[str, str]) -> None:
    """The export path the vLLM backend relies on, run with a folder-fed transformers backend on the CPU."""
    from arc_ttft import entry

    prompts = _prompts()
    gen = {"prompts": prompts, "max_new_tokens": MAX_NEW}
    export_dir = None
    call("load_model", model=tiny, device="cpu", lora=LORA, seed=0)
    try:
        fresh = call("generate", **gen)["outputs"]
        call("load_adapter", path=adapters["A"])
        live_a = call("generate", **gen)["outputs"]
        call("reset_adapter")
        e = entry._engine
        folder = _FolderBackend()
        folder.load(BackendContext(tiny, e.model, e.tokenizer, e.device, e.dtype, e.info["lora"], 512))
        e.backend = folder

        assert call("generate", **gen)["outputs"] == fresh
        assert call("generate", **gen)["outputs"] == fresh
        first = folder.refs[0]
        assert folder.refs == [first, first]  # unchanged adapter: exported once, same id
        call("load_adapter", path=adapters["A"])
        assert call("generate", **gen)["outputs"] == live_a
        second = folder.refs[-1]
        assert second.id > first.id and folder.released == [first] and not Path(first.path).exists()
        call("reset_adapter")
        assert call("generate", **gen)["outputs"] == fresh
        assert folder.refs[-1].id > second.id
        export_dir = e.export_dir
        assert export_dir is not None and sorted(p.name for p in Path(export_dir).iterdir()) == [
            Path(folder.refs[-1].path).name
        ]
    finally:
        call("unload")
    assert export_dir is not None and not Path(export_dir).exists()
