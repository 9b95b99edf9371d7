"""Generation: log-probs, EOS stops, left padding equals one-by-one, seeded sampling, stop strings."""

from __future__ import annotations

import random

import pytest
from conftest import call, call_error, constant_task, grid_prompt

ANSWER = "12\n34"


@pytest.fixture()
def trained(loaded) -> list[str]:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=100, lr=2e-3, seed=0)
    return tests


def test_random_model_runs_to_max_new_tokens_with_logprobs(loaded) -> None:
    out = call("generate", prompts=["I\n1\nO\n"], max_new_tokens=5)
    (o,) = out["outputs"]
    assert o["n_tokens"] == 5 and out["tokens"] == 5
    assert o["mean_logprob"] <= 0
    assert o["finish_reason"] in ("length", "eos")


def test_trained_answers_stop_at_eos(trained: list[str]) -> None:
    out = call("generate", prompts=trained, max_new_tokens=32)
    for o in out["outputs"]:
        assert o == {**o, "text": ANSWER, "n_tokens": len(ANSWER) + 1, "finish_reason": "eos"}
        assert -0.5 < o["mean_logprob"] <= 0
    assert out["tokens"] == len(trained) * (len(ANSWER) + 1)


def test_batch_of_different_lengths_equals_one_by_one(trained: list[str]) -> None:
    rng = random.Random(5)
    prompts = [*trained, grid_prompt(rng, 1, 1), grid_prompt(rng, 5, 4), "x", grid_prompt(rng, 2, 7)]
    assert len({len(p) for p in prompts}) > 3
    batched = call("generate", prompts=prompts, max_new_tokens=12)["outputs"]
    chunked = call("generate", prompts=prompts, max_new_tokens=12, batch_size=2)["outputs"]
    single = [call("generate", prompts=[p], max_new_tokens=12)["outputs"][0] for p in prompts]
    for outs in (batched, chunked):
        assert [o["text"] for o in outs] == [o["text"] for o in single]
        assert [o["n_tokens"] for o in outs] == [o["n_tokens"] for o in single]
        assert [o["mean_logprob"] for o in outs] == pytest.approx([o["mean_logprob"] for o in single], abs=1e-4)


def test_sampling_is_seeded(loaded) -> None:
    params = {"prompts": ["I\n1\nO\n", "I\n22\nO\n"], "max_new_tokens": 8, "do_sample": True, "temperature": 1.5}
    first = call("generate", **params, seed=1)["outputs"]
    assert call("generate", **params, seed=1)["outputs"] == first
    assert call("generate", **params, seed=2)["outputs"] != first
    greedy = call("generate", prompts=params["prompts"], max_new_tokens=8)["outputs"]
    assert call("generate", **{**params, "temperature": 1e-4}, seed=3)["outputs"] == greedy  # near-greedy


def test_stop_string_ends_the_text_before_it(trained: list[str]) -> None:
    (o,) = call("generate", prompts=trained[:1], max_new_tokens=32, stop=["\n"])["outputs"]
    assert o["text"] == ANSWER.split("\n", maxsplit=1)[0]
    assert o["finish_reason"] == "stop"
    assert o["n_tokens"] == len(ANSWER.split("\n", maxsplit=1)[0]) + 1


def test_empty_prompt_is_a_payload_error(loaded) -> None:
    error = call_error("generate", {"prompts": ["I\n1\nO\n", ""], "max_new_tokens": 2})
    assert error["type"] == "PayloadError"
    assert error["message"].startswith("generate.prompts[1]:")


def test_stop_strings_are_found_however_many_tokens_they_take() -> None:
    """The stop window counts bytes (a byte-level tokenizer spends up to 4 tokens on a character) and skips
    special tokens (they decode to nothing)."""
    from arc_ttft.generate import Rows
    from arc_ttft.tiny import make_char_tokenizer

    tok = make_char_tokenizer()
    bos = tok.convert_tokens_to_ids(tok.bos_token)
    for stop, ids in (
        ("😀😀", tok.encode("ab😀😀cd", add_special_tokens=False)),
        ("\n\n", [*tok.encode("1\n", add_special_tokens=False), *[bos] * 6, *tok.encode("\n2", add_special_tokens=False)]),
    ):
        rows = Rows.start(tok, [len(ids)], (stop,), frozenset({tok.eos_token_id}))
        for t in ids:
            if not rows.record([0], [t], [0.0]):
                break
        (out,) = rows.results()
        assert out["finish_reason"] == "stop", stop
        assert out["text"] == ("ab" if stop == "😀😀" else "1")


@pytest.mark.parametrize("static", [False, True])
def test_every_eos_id_of_the_generation_config_ends_a_row(tiny_path: str, tmp_path, static: bool) -> None:
    """As transformers' generate and vLLM do: instruct models list several EOS ids (Qwen2.5: two)."""
    import json
    import shutil

    from arc_ttft import entry
    from arc_ttft.generate import GenerateConfig

    def first_output() -> tuple[int, str, str]:
        cfg = GenerateConfig(max_new_tokens=5, static_cache=static)
        (o,) = entry._engine.backend.generate(["I\n1\nO\n"], cfg, None).outputs
        return o.token_ids[0], o.finish_reason, o.text

    call("load_model", model=tiny_path, device="cpu", seed=0)
    try:
        first, reason, _ = first_output()
    finally:
        call("unload")
    assert reason == "length"
    model = tmp_path / "two-eos"
    shutil.copytree(tiny_path, model)
    config = json.loads((model / "generation_config.json").read_text())
    config["eos_token_id"] = [config["eos_token_id"], first]
    (model / "generation_config.json").write_text(json.dumps(config))
    call("load_model", model=str(model), device="cpu", seed=0)
    try:
        assert first_output() == (first, "eos", "")
    finally:
        call("unload")
