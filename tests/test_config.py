"""Config rules: every bad value fails at construction with a ValueError naming its field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from nanomoe.config import Config, GPTConfig, MiningConfig, TrainConfig
from nanomoe.model import GPT
from nanomoe.switches import cells, config_fields, full_grid, levels_of, variant_name

pytestmark = pytest.mark.usefixtures("torch_single_thread")

GPT_RULES = [
    ("n_embd_not_divisible_by_n_head", dict(n_embd=30, n_head=4), "n_embd"),
    ("odd_head_size_with_rope", dict(n_embd=6, n_head=2, rope=True), "n_embd"),
    ("rope_base_not_above_one", dict(rope=True, rope_base=1.0), "rope_base"),
    ("top_k_above_n_experts", dict(moe=True, n_experts=4, top_k=5), "top_k"),
    ("top_k_zero", dict(moe=True, n_experts=4, top_k=0), "top_k"),
    ("one_expert_with_moe", dict(moe=True, n_experts=1, top_k=1), "n_experts"),
    ("too_many_experts", dict(moe=True, n_experts=65, top_k=1), "n_experts"),
    ("negative_aux_loss_coef", dict(moe=True, aux_loss_coef=-0.1), "aux_loss_coef"),
    ("negative_z_loss_coef", dict(moe=True, z_loss_coef=-0.1), "z_loss_coef"),
    ("fgram_max_n_below_two", dict(fgram=True, fgram_max_n=1), "fgram_max_n"),
    ("fgram_max_n_above_block", dict(fgram=True, block_size=8, fgram_max_n=9), "fgram_max_n"),
    ("fgram_n_head_not_dividing", dict(fgram=True, n_embd=32, fgram_n_head=3), "fgram_n_head"),
    ("negative_dropout", dict(dropout=-0.1), "dropout"),
    ("dropout_one", dict(dropout=1.0), "dropout"),
    ("zero_layers", dict(n_layer=0), "n_layer"),
    ("zero_vocab", dict(vocab_size=0), "vocab_size"),
    ("zero_block_size", dict(block_size=0), "block_size"),
]

TRAIN_RULES = [
    ("zero_batch_size", dict(batch_size=0), "batch_size"),
    ("zero_max_iters", dict(max_iters=0), "max_iters"),
    ("zero_eval_interval", dict(eval_interval=0), "eval_interval"),
    ("zero_eval_iters", dict(eval_iters=0), "eval_iters"),
    ("negative_warmup", dict(warmup_iters=-1), "warmup_iters"),
    ("zero_learning_rate", dict(learning_rate=0.0), "learning_rate"),
    ("min_lr_above_learning_rate", dict(learning_rate=1e-3, min_lr=2e-3), "min_lr"),
    ("negative_min_lr", dict(min_lr=-1e-5), "min_lr"),
    ("negative_weight_decay", dict(weight_decay=-0.1), "weight_decay"),
    ("beta1_one", dict(beta1=1.0), "beta1"),
    ("beta2_negative", dict(beta2=-0.5), "beta2"),
    ("negative_grad_clip", dict(grad_clip=-1.0), "grad_clip"),
    ("negative_checkpoint_interval", dict(checkpoint_interval=-1), "checkpoint_interval"),
    ("zero_lr_decay_iters", dict(lr_decay_iters=0), "lr_decay_iters"),
    ("unknown_device", dict(device="tpu"), "device"),
]


@pytest.mark.parametrize(
    ("kwargs", "field"), [r[1:] for r in GPT_RULES], ids=[r[0] for r in GPT_RULES]
)
def test_gpt_config_rule_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}\b"):
        GPTConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"), [r[1:] for r in TRAIN_RULES], ids=[r[0] for r in TRAIN_RULES]
)
def test_train_config_rule_raises_value_error_naming_the_field(kwargs, field):
    with pytest.raises(ValueError) as info:
        TrainConfig(**kwargs)
    assert field in str(info.value).split(":")[0]


def test_moe_rules_apply_only_with_moe_on():
    # With moe off, the expert settings are unused and not checked.
    GPTConfig(moe=False, n_experts=1, top_k=7)
    GPTConfig(fgram=False, fgram_max_n=1)
    GPTConfig(rope=False, n_embd=6, n_head=2)


def test_valid_configs_build_for_every_variant():
    for levels in cells(full_grid()):
        c = GPTConfig(**config_fields(levels), n_experts=4, top_k=2, fgram_max_n=4)
        assert levels_of(c) == levels
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert TrainConfig(device=device).device == device


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig])
def test_from_dict_rejects_unknown_keys_and_names_them(cls):
    d = cls().to_dict()
    d["not_a_field"] = 1
    with pytest.raises(ValueError, match="not_a_field"):
        cls.from_dict(d)


@pytest.mark.parametrize("cls", [GPTConfig, TrainConfig])
def test_to_dict_from_dict_round_trip(cls):
    original = (
        cls(n_layer=3, rope=True, moe=True, top_k=2)
        if cls is GPTConfig
        else cls(batch_size=3, lr_decay_iters=None, device="cpu")
    )
    assert cls.from_dict(original.to_dict()) == original


def test_from_dict_still_applies_the_rules():
    with pytest.raises(ValueError, match="^top_k"):
        GPTConfig.from_dict({"moe": True, "n_experts": 2, "top_k": 3})


def test_gpt_with_fgram_on_and_no_fgrams_raises():
    with pytest.raises(ValueError, match="fgram"):
        GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16, fgram=True))


def test_variant_names_are_distinct_and_never_start_with_a_dash():
    names = {variant_name(levels) for levels in cells(full_grid())}
    assert len(names) == 16  # 2^3 model variants x 2 tokenizers
    assert not any(n.startswith("-") for n in names)
    assert GPTConfig(rope=True, moe=True, top_k=1).variant == "rope+moe-fgram-bpe"
    assert GPTConfig(tokenizer="bpe").variant == "abspos-moe-fgram+bpe"
    assert GPTConfig().variant == "abspos-moe-fgram-bpe"


@dataclass
class _Typed(Config):
    ratio: float | None = None
    ids: list[int] = field(default_factory=list)
    table: dict[str, list] = field(default_factory=dict)


@pytest.mark.parametrize(
    "kwargs",
    [dict(ratio=None), dict(ratio=2), dict(ratio=0.5), dict(ids=[1, 2]), dict(table={"a": [1]})],
)
def test_type_check_accepts_values_of_any_annotated_type(kwargs):
    assert _Typed(**kwargs).to_dict()[next(iter(kwargs))] == next(iter(kwargs.values()))


@pytest.mark.parametrize(
    ("kwargs", "field_name"),
    [
        (dict(ratio="0.5"), "ratio"),
        (dict(ratio=True), "ratio"),
        (dict(ids=[1, "2"]), "ids"),
        (dict(ids=[True]), "ids"),
        (dict(table={"a": 1}), "table"),
        (dict(table=[1]), "table"),
    ],
)
def test_type_check_rejects_a_wrong_type_naming_the_field(kwargs, field_name):
    with pytest.raises(ValueError, match=rf"^{field_name}: must be"):
        _Typed(**kwargs)


def test_mining_config_rules_name_the_field():
    for kwargs, name in ((dict(max_n=1), "max_n"), (dict(min_count=0), "min_count")):
        with pytest.raises(ValueError, match=rf"^{name}:"):
            MiningConfig(**kwargs)


def test_defaults_are_nanogpts_cpu_reference_config():
    """The benchmark trains the defaults, so they must stay nanoGPT's shakespeare_char CPU
    config (and the MoE and F-gram settings the README quotes)."""
    m, t = GPTConfig(), TrainConfig()
    assert (m.block_size, m.n_layer, m.n_head, m.n_embd, m.dropout, m.bias) == (
        64, 4, 4, 128, 0.0, False,
    )  # fmt: skip
    assert (m.n_experts, m.top_k, m.fgram_max_n) == (4, 1, 3)
    assert (t.batch_size, t.max_iters, t.learning_rate, t.min_lr, t.warmup_iters) == (
        12, 2000, 1e-3, 1e-4, 100,
    )  # fmt: skip
    assert (t.eval_interval, t.eval_iters, t.beta2, t.seed) == (250, 20, 0.99, 1337)
