"""SASRec: causality, padding invariance, loss masking, learning a pattern, exported factors."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from recspark.models.sasrec import SASRec

N_ITEMS, MAX_LEN = 20, 6
PAD = N_ITEMS


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models on a shared 2-core machine: a second intra-op thread only adds contention
    # (measured: 25x slower per step under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(dropout: float = 0.2) -> SASRec:
    torch.manual_seed(0)
    return SASRec(N_ITEMS, 16, MAX_LEN, dropout=dropout)


def _cycles(n: int, gen: torch.Generator, min_items: int = 1) -> torch.Tensor:
    """(n, MAX_LEN + 1) left-padded rows: item k+1 = item k + step (mod N_ITEMS), step in 1..3.

    The step differs between rows, so the next item needs the last two items, not the last one.
    """
    start = torch.randint(0, N_ITEMS, (n, 1), generator=gen)
    step = torch.randint(1, 4, (n, 1), generator=gen)
    seq = (start + step * torch.arange(MAX_LEN + 1)) % N_ITEMS
    n_real = torch.randint(min_items, MAX_LEN + 2, (n,), generator=gen)
    seq[torch.arange(MAX_LEN + 1) < (MAX_LEN + 1 - n_real).unsqueeze(1)] = PAD
    return seq


def test_hidden_state_at_t_ignores_later_items() -> None:
    model = _model().eval()
    seq = torch.tensor([[PAD, 3, 7, 1, 9, 4], [5, 6, 7, 8, 9, 10]])
    changed = seq.clone()
    changed[:, 3:] = torch.tensor([[2, 2, 2], [11, 0, 19]])
    with torch.no_grad():
        before, after = model.encode(seq), model.encode(changed)
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_more_left_padding_gives_the_same_user_vector() -> None:
    model = _model().eval()
    short = torch.tensor([[4, 8, 15], [PAD, PAD, 16]])
    longer = torch.cat([torch.full((2, 3), PAD), short], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            model.user_vectors_from_sequences(short), model.user_vectors_from_sequences(longer)
        )
        torch.testing.assert_close(model(short), model(longer))


def test_longer_rows_keep_their_most_recent_items() -> None:
    model = _model().eval()
    seq = torch.arange(MAX_LEN + 3).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(
            model.user_vectors_from_sequences(seq),
            model.user_vectors_from_sequences(seq[:, -MAX_LEN:]),
        )
    with pytest.raises(ValueError, match="max_len"):
        model.encode(seq)


def _bias(model: SASRec) -> torch.Tensor:
    assert model.item_bias is not None
    return model.item_bias.weight[:, 0]


def test_loss_ignores_padding_targets() -> None:
    model = _model(dropout=0.0)
    seq = torch.tensor([[PAD, PAD, 1, 2, 3], [4, 5, 6, 7, 8]])
    target = torch.tensor([[PAD, PAD, 2, 3, PAD], [5, 6, 7, 8, 9]])
    loss = model.loss(seq, target)
    # Only the real targets count: the mean over them, computed by hand.
    logits = model.encode(seq) @ model.item_emb.weight[:N_ITEMS].T + _bias(model)
    keep = target != PAD
    manual = torch.nn.functional.cross_entropy(logits[keep], target[keep])
    torch.testing.assert_close(loss, manual)
    # A real target after a padded input is skipped too; an all-padding batch gives 0.
    seq_pad_first = seq.clone()
    seq_pad_first[0, 2] = PAD
    target_first = target.clone()
    target_first[0, 2] = PAD
    torch.testing.assert_close(
        model.loss(seq_pad_first, target), model.loss(seq_pad_first, target_first)
    )
    all_pad = torch.full_like(seq, PAD)
    assert model.loss(all_pad, all_pad).item() == 0.0
    assert torch.isfinite(model.loss(seq, target, n_negatives=5))


def test_loss_of_rows_grouped_by_length_equals_the_padded_batch() -> None:
    # `loss` encodes rows of similar length together, cut to their longest row: the value and
    # the gradients must be those of encoding the whole padded batch.
    model = _model(dropout=0.0)
    seq = _cycles(13, torch.Generator().manual_seed(5))  # 1..MAX_LEN + 1 items per row
    seq[0] = PAD  # a row of padding only
    inp, target = model.sequences_to_training(seq)
    loss = model.loss(inp, target)
    grads = torch.autograd.grad(loss, [model.item_emb.weight, model.pos_emb.weight])
    keep = (target != PAD) & (inp != PAD)
    logits = model.encode(inp)[keep] @ model.item_emb.weight[:N_ITEMS].T + _bias(model)
    manual = torch.nn.functional.cross_entropy(logits, target[keep])
    manual_grads = torch.autograd.grad(manual, [model.item_emb.weight, model.pos_emb.weight])
    torch.testing.assert_close(loss, manual)
    for got, expected in zip(grads, manual_grads, strict=True):
        torch.testing.assert_close(got, expected)


def test_sequences_to_training_shifts_by_one() -> None:
    model = _model()
    inp, target = model.sequences_to_training(torch.tensor([[PAD, PAD, 1, 2, 3]]))
    assert inp.tolist() == [[PAD, PAD, 1, 2]]
    assert target.tolist() == [[PAD, PAD, 2, 3]]


def _hit_at_1(model: SASRec, test: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = model(test[:, :-1]).argmax(dim=1)
    return float((pred == test[:, -1]).float().mean())


@pytest.mark.parametrize(("n_negatives", "steps"), [(None, 300), (10, 500)])
def test_learns_the_next_item_of_cycles(n_negatives: int | None, steps: int) -> None:
    gen = torch.Generator().manual_seed(100)
    test = _cycles(500, gen, min_items=3)  # two inputs at least: the step is then known
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, 32, MAX_LEN, n_layers=2, n_heads=2, dropout=0.1)
    assert _hit_at_1(model, test) < 0.2  # chance is 1/20
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(steps):
        inp, target = model.sequences_to_training(_cycles(64, gen))
        loss = model.loss(inp, target, n_negatives)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert _hit_at_1(model, test) > 0.9


@pytest.mark.parametrize("item_bias", [True, False])
def test_factor_set_scores_are_the_next_item_logits(item_bias: bool) -> None:
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, 16, MAX_LEN, item_bias=item_bias)
    if item_bias:
        with torch.no_grad():
            _bias(model).copy_(torch.randn(N_ITEMS))
    seqs = _cycles(7, torch.Generator().manual_seed(3))[:, 1:]
    seqs[2] = PAD  # a user with no history
    model.train()
    factors = model.factor_set(seqs, batch_size=3)
    assert model.training  # restored
    dim = 16 + int(item_bias)
    assert factors.users.shape == (7, dim) and factors.items.shape == (N_ITEMS, dim)
    assert factors.users.dtype == np.float32 and factors.items.dtype == np.float32
    scores = factors.user_vectors(np.arange(7), [None] * 7) @ factors.items.T
    model.eval()
    with torch.no_grad():
        expected = model(seqs).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_empty_sequences_rank_by_bias() -> None:
    model = _model()
    with torch.no_grad():
        _bias(model).copy_(torch.randn(N_ITEMS))
    factors = model.factor_set(torch.full((2, MAX_LEN), PAD))
    assert np.isfinite(factors.users).all()
    np.testing.assert_array_equal(factors.users[:, :-1], 0.0)
    np.testing.assert_array_equal(factors.users[:, -1], 1.0)
    np.testing.assert_allclose(
        factors.users @ factors.items.T, factors.items[None, :, -1].repeat(2, 0)
    )


def test_a_model_pickled_with_the_earlier_bias_parameter_still_scores() -> None:
    # Until the sampled softmax (sparse gradients), the item bias was a bare (n_items,)
    # parameter `bias`: kept fits and registered models hold it in that shape.
    torch.manual_seed(0)
    model = _model()
    old_bias = torch.randn(N_ITEMS)
    del model._modules["item_bias"]
    model._parameters["bias"] = torch.nn.Parameter(old_bias.clone())
    loaded = pickle.loads(pickle.dumps(model))
    assert "bias" not in dict(loaded.named_parameters())
    torch.testing.assert_close(_bias(loaded), old_bias)
    items = loaded.item_vectors()
    assert items.shape == (N_ITEMS, 17)
    torch.testing.assert_close(items[:, -1], old_bias)


def test_dropout_zeroes_a_share_p_and_scales_the_rest_as_nn_dropout_does() -> None:
    from recspark.models.sasrec import _Dropout

    torch.manual_seed(0)
    drop = _Dropout(0.5)
    x = torch.full((200, 100), 2.0, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert 0.45 < float(kept.float().mean()) < 0.55
    assert torch.equal(y[kept], torch.full_like(y[kept], 4.0))  # 2 / (1 - 0.5)
    y.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, kept * 2.0)  # the mask, scaled
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match="dropout"):
        _Dropout(1.0)
