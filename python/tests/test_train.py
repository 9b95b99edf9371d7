"""Training: loss on answers only, skipping over-long samples, real learning, and a reset that is really a reset."""

from __future__ import annotations

import math
import random

import pytest
import torch
from conftest import LORA, call, call_error, constant_task

from arc_ttft import entry
from arc_ttft.train import IGNORE, build_examples, collate, lr_factor

ANSWER_A = "343\n434\n343"
ANSWER_B = "55\n18"
FAST = {"lr": 2e-3, "warmup_ratio": 0.1, "seed": 0}


def _greedy(prompts: list[str]) -> list[str]:
    return [o["text"] for o in call("generate", prompts=prompts, max_new_tokens=16)["outputs"]]


def test_labels_cover_only_answer_and_eos(loaded) -> None:
    tok = entry._engine.tokenizer
    samples = [{"prompt": "I\n12\nO\n", "answer": "3"}, {"prompt": "I\n1\nO\n", "answer": "45\n6"}]
    examples, skipped = build_examples(tok, samples, max_seq_len=100)
    assert skipped == 0
    batch = collate(examples, tok.pad_token_id, torch.device("cpu"))
    eos = tok.eos_token_id
    # left padding: every row ends with its answer + EOS; labels hold exactly those tokens, -100 elsewhere
    for row, s in enumerate(samples):
        answer = tok(s["answer"], add_special_tokens=False)["input_ids"] + [eos]
        labels = batch["labels"][row].tolist()
        assert labels[len(labels) - len(answer) :] == answer
        assert all(x == IGNORE for x in labels[: len(labels) - len(answer)])
        assert batch["input_ids"][row, -len(answer) :].tolist() == answer
        n = len(s["prompt"]) + len(answer)
        assert batch["attention_mask"][row].sum().item() == n
        assert batch["position_ids"][row, -n:].tolist() == list(range(n))
    assert batch["keep"] == max(len(s["answer"]) + 1 for s in samples) + 1


def test_over_long_samples_are_skipped_and_counted(loaded) -> None:
    short = {"prompt": "I\n1\nO\n", "answer": "2"}  # 6 + 1 + 1 EOS = 8 tokens
    long = {"prompt": "I\n123456789\nO\n", "answer": "2"}  # 16 tokens
    result = call("train", samples=[short, long, long], steps=2, max_seq_len=8, **FAST)
    assert (result["skipped"], result["samples"], result["steps"]) == (2, 1, 2)
    assert result["answer_tokens"] == 2 * 2  # "2" + EOS per step
    assert result["tokens"] == 2 * 8
    error = call_error("train", {"samples": [long], "steps": 1, "max_seq_len": 8})
    assert error["type"] == "NoTrainableSamplesError"
    assert "max_seq_len 8" in error["message"]


def test_a_diverged_loss_is_a_typed_error_and_a_reset_recovers(loaded) -> None:
    samples = [{"prompt": "I\n1\nO\n", "answer": "2"}]
    error = call_error("train", {"samples": samples, "steps": 3, "lr": 1e20, "max_grad_norm": 0, "seed": 0})
    assert error["type"] == "TrainingDivergedError"
    assert "step 2 of 3" in error["message"] and "lr 1e+20" in error["message"]
    # Sampling from the blown-up weights says so too (greedy decoding only emits garbage).
    error = call_error("generate", {"prompts": ["I\n1\nO\n"], "max_new_tokens": 2, "do_sample": True})
    assert error["type"] == "TrainingDivergedError"
    call("reset_adapter")
    result = call("train", samples=samples, steps=2, **FAST)
    assert all(math.isfinite(x) for x in result["losses"])


def test_schedule_warms_up_then_decays_without_zero_steps() -> None:
    factors = [lr_factor(s, 10, 2) for s in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert factors == sorted(factors[:2]) + sorted(factors[2:], reverse=True)
    assert min(factors) > 0


def test_grad_accum_matches_a_larger_batch(loaded) -> None:
    samples, _ = constant_task(ANSWER_A, n_train=4)
    accum = call("train", samples=samples, steps=3, batch_size=1, grad_accum=4, **FAST)["losses"]
    call("reset_adapter")
    batch = call("train", samples=samples, steps=3, batch_size=4, grad_accum=1, **FAST)["losses"]
    assert accum == pytest.approx(batch, rel=1e-5)


def test_fine_tuning_turns_a_wrong_answer_right(loaded) -> None:
    samples, tests = constant_task(ANSWER_A)
    assert all(text != ANSWER_A for text in _greedy(tests))
    result = call("train", samples=samples, steps=100, **FAST)
    assert len(result["losses"]) == 100
    assert result["losses"][-1] < result["losses"][0] / 10
    assert _greedy(tests) == [ANSWER_A] * len(tests)


def test_reset_makes_training_independent_of_earlier_tasks(tiny_path: str, loaded) -> None:
    samples_a, _ = constant_task(ANSWER_A, seed=1)
    samples_b, tests_b = constant_task(ANSWER_B, seed=2)
    call("train", samples=samples_a, steps=20, **FAST)
    call("reset_adapter", seed=0)
    after_a = call("train", samples=samples_b, steps=20, **FAST)["losses"], _greedy(tests_b)

    call("load_model", model=tiny_path, device="cpu", lora=LORA, seed=0)
    fresh = call("train", samples=samples_b, steps=20, **FAST)["losses"], _greedy(tests_b)
    assert after_a == fresh  # bit-exact on CPU: same init, same RNG stream, same ops


def test_reset_restores_the_initial_tensors_and_seed_changes_the_init(loaded) -> None:
    model = entry._engine.model
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    samples, _ = constant_task(ANSWER_A, n_train=2)
    call("train", samples=samples, steps=3, **FAST)
    assert any(not torch.equal(p, initial[n]) for n, p in model.named_parameters() if n in initial)
    call("reset_adapter")
    assert all(torch.equal(p, initial[n]) for n, p in model.named_parameters() if n in initial)
    call("reset_adapter", seed=7)
    changed = [n for n, p in model.named_parameters() if n in initial and not torch.equal(p, initial[n])]
    assert changed and all("lora_A" in n for n in changed)  # only A is random; B stays 0, saved modules restored
    call("reset_adapter", seed=0)
    assert all(torch.equal(p, initial[n]) for n, p in model.named_parameters() if n in initial)


def test_training_reseeds_so_the_global_rng_does_not_matter(tiny_path: str, loaded) -> None:
    # LoRA dropout draws from torch's global RNG: the same losses prove each call reseeds it
    call("load_model", model=tiny_path, device="cpu", lora={**LORA, "dropout": 0.2}, seed=0)
    samples, _ = constant_task(ANSWER_A, n_train=4)
    params = {"samples": samples, "steps": 3, "batch_size": 2, **FAST}
    first = call("train", **params)["losses"]
    call("reset_adapter")
    torch.manual_seed(random.Random().randint(0, 10**6))
    assert call("train", **params)["losses"] == first
