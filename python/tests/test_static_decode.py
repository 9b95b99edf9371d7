"""Static-cache decoding gives the dynamic loop's outputs: left padding, EOS, stop strings, LoRA, padding rows,
seeded sampling, cache reuse per bucket, and the compiled step."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from conftest import call, constant_task, grid_prompt

from arc_ttft import entry
from arc_ttft import static_decode as sd
from arc_ttft.errors import PayloadError
from arc_ttft.generate import GenerateConfig, _chunk
from arc_ttft.model import load_base
from arc_ttft.tokens import encode_batch

ANSWER = "12\n34"


def _run(fn: Any, model: Any, tokenizer: Any, prompts: list[str], cfg: GenerateConfig, **kw: Any) -> list[dict]:
    """``fn`` (``_chunk`` or ``decode_static``) as ``generate`` calls it: eval mode, inference mode, a fresh seeded
    generator when sampling."""
    gen = torch.Generator().manual_seed(cfg.seed) if cfg.do_sample else None
    model.eval()
    with torch.inference_mode():
        return fn(model, tokenizer, encode_batch(tokenizer, prompts), cfg, gen, **kw)


def _engine_run(fn: Any, prompts: list[str], cfg: GenerateConfig, **kw: Any) -> list[dict]:
    e = entry._engine
    return _run(fn, e.model, e.tokenizer, prompts, cfg, **kw)


def _assert_same(got: list[dict], want: list[dict]) -> None:
    assert [list(o) for o in got] == [list(o) for o in want]  # same keys, same order
    for key in ("text", "n_tokens", "finish_reason"):
        assert [o[key] for o in got] == [o[key] for o in want], key
    assert [o["mean_logprob"] for o in got] == pytest.approx([o["mean_logprob"] for o in want], abs=1e-4)


def _prompts(tests: list[str]) -> list[str]:
    rng = random.Random(7)
    prompts = [tests[0], "x", grid_prompt(rng, 4, 3), "hello world", grid_prompt(rng, 2, 2)]
    assert len({len(p) for p in prompts}) == len(prompts)  # every row is left-padded differently
    return prompts


def test_buckets() -> None:
    sizes = (1, 2, 3, 4, 5, 8, 9, 33, 64, 65, 129)
    assert [sd.batch_bucket(n) for n in sizes] == [1, 2, 4, 4, 8, 8, 16, 64, 64, 128, 192]
    assert sd.length_bucket(10, 32) == sd.LENGTH_STEP
    assert sd.length_bucket(sd.LENGTH_STEP - 8, 8) == sd.LENGTH_STEP
    assert sd.length_bucket(sd.LENGTH_STEP - 8, 9) == 2 * sd.LENGTH_STEP


def test_trained_adapter_eos_and_stop_equal_the_dynamic_loop(loaded) -> None:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=100, lr=2e-3, seed=0)
    prompts = _prompts(tests)
    for cfg in (GenerateConfig(max_new_tokens=14), GenerateConfig(max_new_tokens=14, stop=("\n",))):
        want = _engine_run(_chunk, prompts, cfg)
        _assert_same(_engine_run(sd.decode_static, prompts, cfg, compile=False), want)
        reasons = {o["finish_reason"] for o in want}
        assert reasons == ({"stop", "eos"} if cfg.stop else {"eos"})  # rows end at different steps
        assert want[0]["text"] == (ANSWER.split("\n", maxsplit=1)[0] if cfg.stop else ANSWER)


def test_adapter_after_a_few_steps_greedy_and_sampled(loaded) -> None:
    """A barely trained adapter: LoRA is non-zero, outputs are long and unlike the trained answer."""
    call("train", samples=constant_task(ANSWER)[0][:4], steps=3, lr=5e-3, seed=1)
    assert any(p.abs().max() > 0 for n, p in entry._engine.model.named_parameters() if "lora_B" in n)
    prompts = _prompts(constant_task(ANSWER)[1])
    for cfg in (
        GenerateConfig(max_new_tokens=10),
        GenerateConfig(max_new_tokens=10, do_sample=True, temperature=1.5, top_p=0.9, seed=3),
    ):
        want = _engine_run(_chunk, prompts, cfg)
        _assert_same(_engine_run(sd.decode_static, prompts, cfg, compile=False), want)
        assert max(o["n_tokens"] for o in want) == 10


def test_plain_model_without_peft(tiny_path: str) -> None:
    model, tokenizer = load_base(tiny_path, torch.float32, torch.device("cpu"))
    prompts = ["I\n12\nO\n", "x", "I\n3\n4\n5\nO\n"]
    cfg = GenerateConfig(max_new_tokens=8)
    _assert_same(
        _run(sd.decode_static, model, tokenizer, prompts, cfg, compile=False),
        _run(_chunk, model, tokenizer, prompts, cfg),
    )


def test_padding_rows_and_positions(loaded) -> None:
    """A batch of 3 runs in bucket 4: the dummy row changes nothing, alone or batched; positions are _chunk's."""
    call("train", samples=constant_task(ANSWER)[0][:4], steps=3, lr=5e-3, seed=1)
    prompts = ["I\n12\nO\n", "x", "I\n3\n4\n5\nO\n"]
    cfg = GenerateConfig(max_new_tokens=6)
    seen: dict[str, list[torch.Tensor]] = {"chunk": [], "static": []}
    key = "chunk"
    base = entry._engine.model.get_base_model()
    handle = base.register_forward_pre_hook(
        lambda _m, _a, kw: seen[key].append(kw["position_ids"].clone()), with_kwargs=True
    )
    try:
        want = _engine_run(_chunk, prompts, cfg)
        key = "static"
        got = _engine_run(sd.decode_static, prompts, cfg, compile=False)
    finally:
        handle.remove()
    _assert_same(got, want)
    assert sd.cached_buckets(entry._engine.model)[-1][:2] == (4, sd.LENGTH_STEP)
    chunk, static = seen["chunk"], seen["static"]
    assert static[0].shape[0] == 4 and torch.equal(static[0][:3], chunk[0])  # prefill, real rows
    # row 0 (the longest prompt) is row 0 of every dynamic step while it decodes
    rows0 = [int(p[0, -1]) for p in chunk[: want[0]["n_tokens"]]]
    assert [int(p[0, -1]) for p in static[: len(rows0)]] == rows0
    alone = [_engine_run(sd.decode_static, [p], cfg, compile=False)[0] for p in prompts]
    _assert_same(got, alone)


def test_a_bucket_reuses_its_cache_and_the_store_is_bounded(loaded, monkeypatch) -> None:
    model = entry._engine.model
    cfg = GenerateConfig(max_new_tokens=3)
    _engine_run(sd.decode_static, ["I\n1\nO\n", "x", "ab"], cfg, compile=False)
    (key,) = sd.cached_buckets(model)
    first = sd._store(model)[key].cache
    _engine_run(sd.decode_static, ["I\n22\nO\n", "yz", "c", "d"], cfg, compile=False)  # another batch, same bucket
    assert sd.cached_buckets(model) == [key] and sd._store(model)[key].cache is first
    monkeypatch.setattr(sd, "MAX_ENTRIES", 2)
    _engine_run(sd.decode_static, ["x"], cfg, compile=False)
    _engine_run(sd.decode_static, ["x" * sd.LENGTH_STEP], cfg, compile=False)
    assert [k[:2] for k in sd.cached_buckets(model)] == [(1, sd.LENGTH_STEP), (1, 2 * sd.LENGTH_STEP)]
    assert sd.release(model) == 2 and sd.cached_buckets(model) == []


def test_compiled_step_equals_eager_and_sees_adapter_updates(loaded) -> None:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=100, lr=2e-3, seed=0)
    prompts = _prompts(tests)[:3]
    cfg = GenerateConfig(max_new_tokens=8, stop=("4",))
    eager = _engine_run(sd.decode_static, prompts, cfg, compile=False)
    _assert_same(_engine_run(sd.decode_static, prompts, cfg, compile=True), eager)
    # trained further in place: the compiled graph reads the parameters, it did not bake them in
    call("train", samples=samples, steps=20, lr=2e-2, seed=1)
    again = _engine_run(sd.decode_static, prompts, cfg, compile=True)
    _assert_same(again, _engine_run(_chunk, prompts, cfg))
    assert again != eager
    # status tells what compiling did (no CUDA graphs on a CPU, so none skipped)
    counts = call("status")["compile"]
    assert counts["graphs"] >= 1 and counts["cudagraph_skips"] == 0 and counts["graph_breaks"] >= 0


def test_unsupported_models_raise_a_payload_error() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from arc_ttft.tiny import make_char_tokenizer

    small = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    sliding = Qwen2ForCausalLM(
        Qwen2Config(vocab_size=300, use_sliding_window=True, sliding_window=8, max_window_layers=0, **small)
    )
    with pytest.raises(PayloadError, match="StaticSlidingWindowLayer"):
        _run(sd.decode_static, sliding, make_char_tokenizer(), ["x"], GenerateConfig(max_new_tokens=2), compile=False)
    assert sd.cached_buckets(sliding) == []
    flex = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, **small))
    assert sd.unsupported_reason(flex) is None
    flex.config._attn_implementation = "flex_attention"
    assert "flex_attention" in (sd.unsupported_reason(flex) or "")


def test_the_generate_method_takes_the_static_path_on_request(loaded) -> None:
    """Through dispatch: ``static_cache`` (eager and compiled) gives the default outputs, per-prompt limits included."""
    from conftest import call_error

    rng = random.Random(11)
    prompts = [grid_prompt(rng, rng.randint(1, 4), rng.randint(1, 4)) for _ in range(5)]
    gen = {"prompts": prompts, "max_new_tokens": [3, 9, 1, 6, 9], "stop": ["."]}
    plain = call("generate", **gen)["outputs"]
    static = call("generate", **gen, static_cache=True)["outputs"]
    _assert_same(static, plain)
    assert sd.cached_buckets(entry._engine.model)  # the static path ran
    assert [o["n_tokens"] for o in plain if o["finish_reason"] == "length"] == [
        m for o, m in zip(plain, gen["max_new_tokens"], strict=True) if o["finish_reason"] == "length"
    ]
    err = call_error("generate", {**gen, "compile": True})
    assert err["type"] == "PayloadError" and "generate.compile" in err["message"]
    model = entry._engine.model
    call("unload")  # frees the static caches at once, not at garbage collection
    assert sd.cached_buckets(model) == []
