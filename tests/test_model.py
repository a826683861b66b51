import pytest
import torch

from gptdeploy.errors import ConfigError
from gptdeploy.graph_contract import position_ids
from gptdeploy.model import GPT, PRESETS, GPTConfig
from tests.helpers import MODEL_VARIANTS, tiny_model


@pytest.fixture(params=sorted(MODEL_VARIANTS), ids=sorted(MODEL_VARIANTS))
def model(request) -> GPT:
    return tiny_model(**MODEL_VARIANTS[request.param])


@torch.no_grad()
def test_cached_decoding_equals_full_recompute(model):
    idx = torch.randint(0, 320, (2, 24))
    full, _ = model(idx)
    pieces, past = [], None
    for start, end in [(0, 10), (10, 11), (11, 17), (17, 24)]:
        logits, past = model(idx[:, start:end], past)
        pieces.append(logits)
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() <= 1e-5
    assert past[0][0].shape == (2, model.config.kv_heads, 24, model.config.head_dim)


@torch.no_grad()
def test_left_padded_batch_equals_each_row_alone(model):
    rows = [torch.randint(0, 320, (n,)) for n in (5, 13, 9)]
    width = max(len(r) for r in rows)
    batch = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    logits, past = model(batch, attention_mask=mask, position_ids=torch.from_numpy(position_ids(mask.numpy(), width)))
    next_tokens = torch.randint(0, 320, (len(rows), 1))
    step_mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=torch.long)], dim=1)
    step_positions = torch.from_numpy(position_ids(step_mask.numpy(), 1))
    step_logits, _ = model(next_tokens, past, attention_mask=step_mask, position_ids=step_positions)
    for i, row in enumerate(rows):
        alone, _ = model(torch.cat([row, next_tokens[i]])[None])
        assert (logits[i, width - len(row) :] - alone[0, :-1]).abs().max() <= 1e-5
        assert (step_logits[i, -1] - alone[0, -1]).abs().max() <= 1e-5


@torch.no_grad()
def test_fully_padded_rows_stay_finite():
    model = tiny_model()
    mask = torch.tensor([[0, 0, 0, 1], [1, 1, 1, 1]])
    logits, _ = model(torch.randint(0, 320, (2, 4)), attention_mask=mask)
    assert torch.isfinite(logits).all()


def test_tied_head_shares_the_embedding_and_untied_does_not():
    tied, untied = tiny_model(), tiny_model(tie_embeddings=False)
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.lm_head.weight is not untied.wte.weight
    assert untied.num_parameters() == tied.num_parameters() + 320 * 64


def test_grouped_query_attention_shrinks_the_kv_projection():
    mha, gqa = tiny_model(), tiny_model(n_kv_head=2)
    assert mha.h[0].attn.c_attn.out_features == 3 * 64
    assert gqa.h[0].attn.c_attn.out_features == 64 + 2 * 2 * 16


def test_gpt2_names_are_used():
    names = set(dict(tiny_model().named_parameters()))
    for expected in ["wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.attn.c_attn.weight", "h.1.mlp.c_proj.bias",
                     "ln_f.weight"]:  # fmt: skip
        assert expected in names


def test_presets_have_the_documented_sizes():
    assert GPT(PRESETS["gpt2-124m"]).num_parameters() == 124_439_808  # GPT-2 small, tied head
    assert GPT(PRESETS["tiny"]).num_parameters() < 200_000


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(n_embd=100, n_head=3), "does not divide by n_head"),
        (dict(n_kv_head=3), "does not divide by n_kv_head"),
        (dict(norm="batchnorm"), "norm must be"),
        (dict(positions="alibi"), "positions must be"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_invalid_configs_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(ConfigError, match=message):
        GPTConfig.preset("tiny", **overrides)


def test_unknown_preset_and_unknown_fields_are_refused():
    with pytest.raises(ConfigError, match="unknown preset"):
        GPTConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown model config fields"):
        GPTConfig.from_dict({**PRESETS["tiny"].to_dict(), "flash": True})


def test_config_round_trips_through_a_dict():
    config = GPTConfig.preset("small", **MODEL_VARIANTS["llama"])
    assert GPTConfig.from_dict(config.to_dict()) == config


def test_an_encoder_sees_both_sides_and_a_decoder_only_the_past():
    ids = torch.randint(0, 320, (2, 10), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 320  # only the last token differs
    for causal in (True, False):
        model = tiny_model(causal=causal)
        with torch.no_grad():
            before, after = model(ids)[0], model(changed)[0]
        earlier_moved = (before[:, :-1] - after[:, :-1]).abs().max()
        assert (earlier_moved > 1e-4) == (not causal), causal


def test_an_encoder_ignores_right_padding():
    model = tiny_model(causal=False)
    ids = torch.randint(4, 320, (1, 8), generator=torch.Generator().manual_seed(1))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 8), torch.zeros(1, 3)], dim=1).long()
    with torch.no_grad():
        alone, with_padding = model(ids)[0], model(padded, attention_mask=mask)[0][:, :8]
    torch.testing.assert_close(with_padding, alone, atol=1e-5, rtol=1e-5)
