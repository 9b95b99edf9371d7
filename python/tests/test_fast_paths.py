"""Fast paths: packed training equals unpacked training; finished rows leave the generation batch unchanged."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import LORA, call, call_error, constant_task, grid_prompt

from arc_ttft import entry
from arc_ttft import train as train_mod
from arc_ttft.generate import merged_adapter
from arc_ttft.model import supports_logits_to_keep
from arc_ttft.train import (
    build_examples,
    can_pack,
    collate_packed,
    pack_rows,
    packed_answer_logits,
    step_loss,
    summed_loss,
)

ANSWER = "12\n34"


def _samples(n: int, seed: int = 3) -> list[dict[str, str]]:
    """Samples of different prompt and answer lengths, so packed rows mix lengths and boundaries matter."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = grid_prompt(rng, rng.randint(1, 5), rng.randint(1, 6)) + grid_prompt(rng, 2, 2)
        answer = "\n".join("".join(str(rng.randint(0, 9)) for _ in range(rng.randint(1, 4))) for _ in range(2))
        out.append({"prompt": prompt, "answer": answer})
    return out


def _loss_and_grads(
    pack: bool, capacity: int, n: int = 7, *, seed: int = 3, micro_size: int | None = None, compile: bool = False
) -> tuple[float, int, dict[str, torch.Tensor]]:
    """Summed loss, rows fed and every adapter gradient of one step over ``n`` samples (one pass by default)."""
    e = entry._engine
    examples, _ = build_examples(e.tokenizer, _samples(n, seed), max_seq_len=capacity)
    e.model.zero_grad(set_to_none=True)
    e.model.train()
    loss, _, rows = step_loss(
        e.model,
        examples,
        pack=pack,
        capacity=capacity,
        pad_id=e.tokenizer.pad_token_id,
        device=torch.device("cpu"),
        use_keep=supports_logits_to_keep(e.model),
        micro_size=micro_size or len(examples),
        scale=1.0,
        compile=compile,
    )
    e.model.eval()
    grads = {name: p.grad.clone() for name, p in e.model.named_parameters() if p.requires_grad}
    e.model.zero_grad(set_to_none=True)
    return loss, rows, grads


def test_packed_rows_give_the_unpacked_loss_and_gradients(loaded) -> None:
    assert can_pack(entry._engine.model)
    call("train", samples=_samples(4, seed=9), steps=3, lr=5e-3, seed=1)  # a non-zero adapter (LoRA B starts at 0)
    ref_loss, ref_rows, ref = _loss_and_grads(pack=False, capacity=120)
    loss, rows, got = _loss_and_grads(pack=True, capacity=120)
    assert ref_rows == 7 and 1 < rows < 7  # several rows, several samples per row
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert got.keys() == ref.keys()
    for name, g in ref.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), name
    assert max(g.abs().max().item() for g in ref.values()) > 0


def test_models_without_a_plain_head_take_the_logits_to_keep_path(loaded, monkeypatch) -> None:
    call("train", samples=_samples(4, seed=9), steps=3, lr=5e-3, seed=1)
    ref_loss, _, ref = _loss_and_grads(pack=True, capacity=120)
    monkeypatch.setattr(train_mod, "PLAIN_HEAD_MODELS", set())
    loss, _, got = _loss_and_grads(pack=True, capacity=120)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for name, g in ref.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), name


def test_packing_without_restarting_positions_would_differ(loaded) -> None:
    """The equality above is not vacuous: a row whose positions do not restart mixes the samples."""
    e = entry._engine
    examples, _ = build_examples(e.tokenizer, _samples(3), max_seq_len=128)
    b = collate_packed([examples], e.tokenizer.pad_token_id, torch.device("cpu"))
    assert b["input_ids"].shape == (1, b["tokens"])  # one full row, no padding
    with torch.no_grad():
        apart = summed_loss(packed_answer_logits(e.model, b, True), b["labels"])
        run_on = {**b, "position_ids": torch.arange(b["tokens"])[None]}
        mixed = summed_loss(packed_answer_logits(e.model, run_on, True), b["labels"])
    assert abs(apart.item() - mixed.item()) > 1e-3


def test_pack_rows_places_every_sample_once_within_capacity(loaded) -> None:
    examples, _ = build_examples(entry._engine.tokenizer, _samples(20), max_seq_len=60)
    rows = pack_rows(examples, 60)
    assert sorted(id(e) for r in rows for e in r) == sorted(id(e) for e in examples)
    assert all(sum(len(e.ids) for e in r) <= 60 for r in rows)
    assert len(rows) < len(examples)
    assert pack_rows(examples, 60) == rows  # deterministic


def test_packed_training_through_dispatch_matches_unpacked(loaded) -> None:
    params = {"samples": _samples(10), "steps": 3, "batch_size": 4, "grad_accum": 2, "lr": 2e-3, "seed": 0}
    plain = call("train", **params)
    call("reset_adapter")
    packed = call("train", **params, pack=True)
    assert (plain["packed"], packed["packed"]) == (False, True)
    assert packed["rows"] < plain["rows"] == 3 * 8
    assert packed["tokens"] == plain["tokens"] and packed["answer_tokens"] == plain["answer_tokens"]
    assert packed["losses"] == pytest.approx(plain["losses"], rel=1e-4)
    assert (packed["fused_optimizer"], packed["autocast"]) == (False, False)  # CPU defaults


def test_the_attention_implementation_is_chosen_at_load(tiny_path) -> None:
    """``attention``: eager packs and trains to SDPA's losses; an implementation the machine lacks is a typed error."""
    params = {"samples": _samples(10), "steps": 3, "batch_size": 4, "lr": 2e-3, "seed": 0, "pack": True}
    losses = {}
    for attention in ("sdpa", "eager"):
        info = call("load_model", model=tiny_path, device="cpu", lora=LORA, seed=0, attention=attention)
        assert info["attention"] == attention
        result = call("train", **params)
        assert result["packed"] is True
        losses[attention] = result["losses"]
    call("unload")
    assert losses["eager"] == pytest.approx(losses["sdpa"], rel=1e-4)
    err = call_error("load_model", {"model": tiny_path, "device": "cpu", "attention": "bogus"})
    assert err["type"] == "PayloadError" and "load_model.attention" in err["message"]
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        err = call_error("load_model", {"model": tiny_path, "device": "cpu", "attention": "flash_attention_2"})
        assert err["type"] == "AttentionUnavailableError" and "flash_attention_2" in err["message"]


def test_flex_attention_keeps_packed_samples_apart(tiny_path) -> None:
    """Under flex attention (rows of max_seq_len on a GPU) a packed row gives SDPA's loss. Forward only: torch has
    no flex-attention backward on the CPU, so flex training itself runs on CUDA only."""
    losses = {}
    for attention in ("sdpa", "flex_attention"):
        call("load_model", model=tiny_path, device="cpu", lora=LORA, seed=0, attention=attention)
        e = entry._engine
        examples, _ = build_examples(e.tokenizer, _samples(7), max_seq_len=256)
        b = collate_packed(pack_rows(examples, 256), e.tokenizer.pad_token_id, torch.device("cpu"))
        assert b["input_ids"].shape[0] > 1 and int((b["position_ids"] == 0).sum()) > b["input_ids"].shape[0]
        with torch.no_grad():
            losses[attention] = summed_loss(packed_answer_logits(e.model, b, True), b["labels"]).item()
    call("unload")
    assert losses["flex_attention"] == pytest.approx(losses["sdpa"], rel=1e-5)


def test_fused_optimizer_and_autocast_can_be_forced_on_cpu(loaded) -> None:
    params = {"samples": _samples(4), "steps": 2, "lr": 2e-3, "seed": 0}
    plain = call("train", **params)
    call("reset_adapter")
    fused = call("train", **params, fused_optimizer=True)
    assert fused["fused_optimizer"] is True
    assert fused["losses"] == pytest.approx(plain["losses"], rel=1e-4)
    call("reset_adapter")
    bf16 = call("train", **params, autocast=True)
    assert bf16["autocast"] is True
    assert bf16["losses"] == pytest.approx(plain["losses"], rel=0.05)  # bfloat16 matmuls: close, not equal


@pytest.mark.parametrize(("capability", "want"), [((7, 5), torch.float32), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_dtype_is_bfloat16_only_where_the_gpu_computes_in_it(monkeypatch, capability, want) -> None:
    """A T4 (7.5) or V100 (7.0) only emulates bfloat16, though ``torch.cuda.is_bf16_supported()`` says yes.
    No GPU here: the capability the decision reads is the one thing stood in for."""
    from arc_ttft import model as model_mod

    asked: list[torch.device] = []

    def capability_of(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    device = torch.device("cuda:1")
    assert model_mod.resolve_dtype("auto", device) == want
    assert asked == [device]  # the chosen GPU's, not the current one's
    assert model_mod.resolve_dtype("auto", torch.device("cpu")) == torch.float32


def _batch_sizes(fn) -> list[int]:
    """The batch size of every forward pass ``fn`` makes."""
    sizes: list[int] = []
    base = entry._engine.model.get_base_model()
    handle = base.register_forward_pre_hook(lambda _m, _a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        fn()
    finally:
        handle.remove()
    return sizes


def test_finished_rows_leave_the_batch_and_outputs_equal_one_by_one(loaded) -> None:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=100, lr=2e-3, seed=0)
    rng = random.Random(7)
    # trained prompts stop after "12\n"; the off-distribution ones end at once (EOS)
    prompts = [tests[0], "x", grid_prompt(rng, 4, 3), "hello world"]
    params = {"max_new_tokens": 14, "stop": ["\n"]}
    out: list = []
    sizes = _batch_sizes(lambda: out.extend(call("generate", prompts=prompts, **params)["outputs"]))
    single = [call("generate", prompts=[p], **params)["outputs"][0] for p in prompts]
    assert [o["text"] for o in out] == [o["text"] for o in single]
    assert [o["n_tokens"] for o in out] == [o["n_tokens"] for o in single]
    assert [o["finish_reason"] for o in out] == [o["finish_reason"] for o in single]
    assert [o["mean_logprob"] for o in out] == pytest.approx([o["mean_logprob"] for o in single], abs=1e-4)
    assert out[0]["finish_reason"] == "stop" and out[0]["text"] == "12"
    assert out[1]["finish_reason"] == "eos" and out[1]["n_tokens"] == 1
    # the batch shrinks as rows finish, and no step runs with a finished row
    assert sizes[0] == 4 and sizes == sorted(sizes, reverse=True) and sizes[-1] < 4
    longest = max(o["n_tokens"] for o in out)
    assert len(sizes) == longest  # prefill + one step per further token of the longest row
    assert sum(sizes[1:]) == sum(o["n_tokens"] - 1 for o in out)


def test_merged_generation_matches_and_restores_the_base_weights_exactly(loaded) -> None:
    samples, tests = constant_task(ANSWER)
    call("train", samples=samples, steps=100, lr=2e-3, seed=0)
    model = entry._engine.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompts = [*tests, "x", "I\n5\nO\n"]
    plain = call("generate", prompts=prompts, max_new_tokens=10)["outputs"]
    merged = call("generate", prompts=prompts, max_new_tokens=10, merge=True)["outputs"]
    assert [o["text"] for o in merged] == [o["text"] for o in plain]
    assert [o["mean_logprob"] for o in merged] == pytest.approx([o["mean_logprob"] for o in plain], abs=1e-4)
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], t) for n, t in before.items())  # bit-exact, base and adapter
    assert not any(getattr(m, "merged", False) for m in model.modules())
    with merged_adapter(model) as n:  # the merge is real: base weights change inside the context
        assert n > 0
        assert any(not torch.equal(p, before[name]) for name, p in model.named_parameters() if "base_layer" in name)
    assert all(torch.equal(after[n], t) for n, t in before.items())
