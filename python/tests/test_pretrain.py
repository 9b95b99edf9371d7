"""Pretraining of the embedded model (arc_ttft.pretrain): a tiny corpus, a few steps, a loadable HF folder."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import call
from safetensors.torch import load_file

from arc_ttft.generate import GenerateConfig, generate
from arc_ttft.pretrain import (
    SpanExample,
    build_span_examples,
    collate_spans,
    evaluate,
    load_corpus,
    lr_at,
    main,
    parse_args,
    split_corpus,
)
from arc_ttft.tiny import make_char_tokenizer
from arc_ttft.train import IGNORE

# Small enough for a few seconds of CPU per run.
TINY = ["--hidden", "32", "--layers", "2", "--heads", "2", "--max-len", "256", "--micro-tokens", "2048"]


def grid(rng: random.Random, h: int, w: int) -> list[list[int]]:
    return [[rng.choice([0, 0, rng.randint(1, 9)]) for _ in range(w)] for _ in range(h)]


def encode(g: list[list[int]]) -> str:
    return "\n".join("".join(map(str, row)) for row in g) + "."


def sample(rng: random.Random, n: int) -> dict[str, Any]:
    """A compact-format identity or recolour task (one context pair, one target), with its output span."""
    kind = "identity" if n % 2 == 0 else "recolour"
    swap = {1: 2, 2: 1}

    def rule(g: list[list[int]]) -> list[list[int]]:
        return g if kind == "identity" else [[swap.get(c, c) for c in row] for row in g]

    h, w = rng.randint(2, 4), rng.randint(2, 4)
    a, b = grid(rng, h, w), grid(rng, h, w)
    head = f"I\n{encode(a)}\nO\n"
    prompt = f"{head}{encode(rule(a))}\nI\n{encode(b)}\nO\n"
    span = [len(head), len(head) + len(encode(rule(a)))]
    return {"task": f"gen-{kind}-{n}", "kind": kind, "prompt": prompt, "answer": encode(rule(b)), "outputs": [span]}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(sample(rng, n)) + "\n" for n in range(60)))
    return path


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "model"
    args = [*TINY, "--steps", "30", "--batch", "8", "--lr", "3e-3", "--warmup", "3", "--log-every", "5"]
    assert (
        main(["--data", str(corpus), "--out", str(out), *args, "--eval-every", "0", "--holdout-curriculum", "4"]) == 0
    )
    return out


def test_saves_a_complete_hf_folder_and_training_record(trained: Path, corpus: Path) -> None:
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "training.json"):
        assert (trained / name).is_file(), name
    record = json.loads((trained / "training.json").read_text())
    assert record["seed"] == 0 and record["args"]["steps"] == 30 and record["steps"] == 30
    assert record["stop_reason"] == "steps"
    assert record["data"]["sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert record["data"]["heldout_tasks"] and record["data"]["train_samples"] > 0
    assert record["model"]["n_params"] > 0 and record["model"]["max_position_embeddings"] == 256
    assert record["wall_seconds"] > 0 and record["tokens_per_second"] > 0
    assert isinstance(record["final_loss"], float)
    assert 0.0 <= record["heldout"]["exact"] <= 1.0 and record["heldout"]["n"] > 0
    assert record["environment"]["torch"] == torch.__version__ and record["environment"]["device"] == "cpu"
    assert record["command"].startswith("python -m arc_ttft.pretrain --data ")
    # The recorded command parses back to the same settings.
    assert vars(parse_args(record["command"].split()[3:])) == record["args"]


def test_loss_decreases(trained: Path) -> None:
    history = json.loads((trained / "training.json").read_text())["history"]
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]


def test_loads_like_any_model(trained: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(trained)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert model.config.model_type == "qwen2" and model.config.hidden_size == 32
    assert model.config.max_position_embeddings == 256
    text = "I\n012\n345.\nO\n"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    info = call("load_model", model=str(trained), device="cpu", seed=0)
    try:
        assert info["model_type"] == "qwen2" and info["vocab_size"] == len(tokenizer)
        result = call("generate", prompts=["I\n12\n21.\nO\n"], max_new_tokens=4)
        assert result["outputs"][0]["n_tokens"] >= 1
    finally:
        call("unload")


def test_same_seed_same_weights(trained: Path, corpus: Path, tmp_path: Path) -> None:
    """On CPU a run is reproducible: the recorded command, rerun, gives bit-identical weights."""
    record = json.loads((trained / "training.json").read_text())
    argv = record["command"].split()[3:]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main(argv) == 0
    a, b = load_file(trained / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_teacher_forced_exact_match_equals_greedy_decoding(trained: Path, corpus: Path) -> None:
    """evaluate() reads greedy exact match off one forward pass; it must agree with real greedy decoding."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(trained).eval()
    tokenizer = AutoTokenizer.from_pretrained(trained)
    tokenizer.padding_side = "left"
    cfg = parse_args(["--data", str(corpus), "--out", "x", "--steps", "1", "--max-len", "256"])
    prompts = [x["prompt"] for x in load_corpus(str(corpus))[:12]]
    outs = generate(model, tokenizer, prompts, GenerateConfig(max_new_tokens=8))["outputs"]
    # The model's own greedy continuations are answers it gets exactly right; one changed token makes them wrong.
    own = [
        {"prompt": p, "answer": o["text"], "kind": "own"}
        for p, o in zip(prompts, outs, strict=True)
        if o["finish_reason"] == "length" and len(tokenizer(o["text"], add_special_tokens=False)["input_ids"]) == 8
    ]
    assert len(own) >= 3
    assert evaluate(model, tokenizer, own, cfg, torch.device("cpu"))["exact"] == 1.0
    flip = [{**x, "answer": x["answer"][:-1] + ("1" if x["answer"][-1] != "1" else "2")} for x in own]
    assert evaluate(model, tokenizer, flip, cfg, torch.device("cpu"))["exact"] == 0.0


def test_steps_zero_fits_the_time_budget(corpus: Path, tmp_path: Path) -> None:
    """--steps 0: the schedule length is chosen after the timed warmup steps and recorded as a plain --steps."""
    out = tmp_path / "auto"
    args = [*TINY, "--steps", "0", "--max-minutes", "0.1", "--warmup", "10", "--batch", "4", "--eval-every", "0"]
    assert main(["--data", str(corpus), "--out", str(out), *args]) == 0
    record = json.loads((out / "training.json").read_text())
    assert record["auto_steps"]["decided_at_step"] == 10 and record["args"]["steps"] > 10
    assert record["stop_reason"] in ("steps", "time") and record["steps"] > 10
    assert f"--steps {record['args']['steps']} " in record["command"]


def test_refuses_to_overwrite_a_model(trained: Path, corpus: Path) -> None:
    assert main(["--data", str(corpus), "--out", str(trained), *TINY, "--steps", "1"]) == 1


def test_holdout_tasks_never_train(corpus: Path) -> None:
    lines = load_corpus(str(corpus))
    cfg = parse_args(
        ["--data", str(corpus), "--out", "x", "--steps", "1", "--holdout-curriculum", "6", "--eval-per-task", "1"]
    )
    split = split_corpus(lines, cfg)
    assert len(split.heldout_tasks) == 6 and len(split.heldout) == 6
    assert not {x["task"] for x in split.train} & set(split.heldout_tasks)
    assert len(split.train) + 6 == len(lines)


def test_span_labels_cover_outputs_and_answer(corpus: Path) -> None:
    tokenizer = make_char_tokenizer()
    lines = load_corpus(str(corpus))[:3]
    examples, skipped = build_span_examples(tokenizer, lines, 256)
    assert skipped == 0
    batch = collate_spans(examples, tokenizer.pad_token_id, torch.device("cpu"))
    for row, (e, line) in enumerate(zip(examples, lines, strict=True)):
        assert isinstance(e, SpanExample)
        labels = batch["labels"][row].tolist()
        target = [t for t in labels if t != IGNORE]
        (start, end), *_ = line["outputs"]
        want = line["prompt"][start:end] + line["answer"]
        assert tokenizer.decode(target[:-1]) == want and target[-1] == tokenizer.eos_token_id


def test_schedule_warms_up_then_decays() -> None:
    cfg = parse_args(["--data", "x", "--out", "y", "--steps", "100", "--warmup", "10", "--lr", "1e-3"])
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[-1] >= 1e-4
