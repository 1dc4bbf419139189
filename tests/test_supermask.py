"""Edge-popup supermask layers: exact top-k counts, straight-through gradients, export."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchinit.init import baseline_init_
from patchinit.models import build_model
from patchinit.supermask import (
    SupermaskConv2d,
    SupermaskLinear,
    keep_count,
    kept_fraction,
    score_parameters,
    set_prune_,
    supermask_layers,
    to_pruned_dense,
    to_supermask_,
    topk_mask,
    validate_prune,
)


@pytest.fixture(autouse=True)
def _single_thread():
    """One torch thread: on the shared, oversubscribed 2-core machine two threads ran the
    CIFAR test 8x slower (busy-waiting thread pool)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def small_net() -> nn.Module:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 6 * 6, 5))
    return baseline_init_(net, "xavier_normal", seed=1)


def test_keep_count_is_round_of_kept_fraction():
    assert keep_count(1728, 0.5) == 864
    assert keep_count(1728, 0.9) == 173  # 172.8
    assert keep_count(1728, 0.1) == 1555  # 1555.2
    assert keep_count(10, 0.9) == 1  # 1 - 0.9 is 0.0999..., still one weight kept
    assert keep_count(3, 0.5) == 2  # halves round up, not to even
    assert keep_count(5, 0.3) == 4  # 3.5 -> 4


@pytest.mark.parametrize("prune", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_layer_keeps_exactly_round_k_n(prune):
    gen = torch.Generator().manual_seed(0)
    conv = SupermaskConv2d.from_dense(nn.Conv2d(3, 64, 3, bias=False), prune, generator=gen)
    n = conv.weight.numel()
    expected = math.floor((1 - prune) * n + 0.5 + 1e-9)
    assert int(conv.mask().sum()) == expected
    # the kept ones are the largest |scores|
    mags = conv.scores.detach().abs().flatten()
    kept = conv.mask().flatten().bool()
    assert mags[kept].min() >= mags[~kept].max()


def test_ties_do_not_change_the_count():
    # every score equal, and heavily quantised scores: threshold ties everywhere
    quantised = torch.randint(0, 3, (50, 40), generator=torch.Generator().manual_seed(0)).float()
    for scores in (torch.ones(7, 11), quantised):
        for n_keep in (0, 1, 13, scores.numel() // 2, scores.numel() - 1, scores.numel()):
            m = topk_mask(scores, n_keep)
            assert int(m.sum()) == n_keep and m.shape == scores.shape
    quant = torch.tensor([3.0, 1.0, 2.0, 2.0, 2.0, 0.0])
    m = topk_mask(quant, 3)
    assert m[0] == 1 and m[1] == 0 and m[5] == 0 and int(m[2:5].sum()) == 2


def _check_ties_lowest_index_first(topk):
    """The documented tie rule of ``topk_mask``: entries tied at the threshold are kept lowest
    (flat, row-major) index first."""
    quant = torch.tensor([3.0, 1.0, 2.0, 2.0, 2.0, 0.0])
    assert topk(quant, 3).tolist() == [1, 0, 1, 1, 0, 0]
    assert topk(quant, 2).tolist() == [1, 0, 1, 0, 0, 0]
    flat = topk(torch.ones(7, 11), 13).flatten()
    assert flat.nonzero().flatten().tolist() == list(range(13))
    grid = torch.tensor([[0.0, 5.0, 1.0], [1.0, 1.0, 9.0]])
    assert topk(grid, 3).tolist() == [[0, 1, 1], [0, 0, 1]]  # of the three 1s, the first (0, 2)
    # vmap batches rows, and each row breaks its own ties
    rows = torch.vmap(lambda r: topk(r, 3))(torch.stack([quant, quant.flip(0)]))
    assert rows.tolist() == [[1, 0, 1, 1, 0, 0], [0, 1, 1, 0, 0, 1]]


def test_ties_are_kept_lowest_index_first():
    _check_ties_lowest_index_first(topk_mask)


def test_the_tie_check_rejects_ties_kept_from_the_highest_index():
    """The broken variant: the same counts, the ties taken from the other end."""

    def highest_index_first(scores, n_keep):
        return topk_mask(scores.reshape(-1).flip(0), n_keep).flip(0).view_as(scores)

    assert int(highest_index_first(torch.ones(7, 11), 13).sum()) == 13  # the count check cannot tell
    with pytest.raises(AssertionError):
        _check_ties_lowest_index_first(highest_index_first)


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5, 50, float("nan"), "half", None])
def test_prune_validated(bad):
    with pytest.raises(ValueError, match="prune"):
        validate_prune(bad)
    with pytest.raises(ValueError, match="prune"):
        to_supermask_(small_net(), bad, seed=0)
    with pytest.raises(ValueError, match="prune"):
        SupermaskLinear(4, 3, prune=bad)


def test_percentage_gets_a_hint():
    with pytest.raises(ValueError, match="0.5 for 50%"):
        validate_prune(50)


def test_gradients_reach_scores_not_weights():
    net = to_supermask_(small_net(), 0.5, seed=0)
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    F.cross_entropy(net(x), torch.tensor([0, 1, 2, 3])).backward()
    for _, layer in supermask_layers(net):
        assert not layer.weight.requires_grad and layer.weight.grad is None
        assert layer.bias is None or (not layer.bias.requires_grad and layer.bias.grad is None)
        assert layer.scores.grad is not None
        # straight-through: pruned weights still get a score gradient (they can pop up)
        pruned = ~layer.mask().bool()
        assert layer.scores.grad[pruned].abs().sum() > 0
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in score_parameters(net)}


def test_straight_through_gradient_value():
    """d loss / d score = d loss / d (masked weight) * weight * sign(score)."""
    gen = torch.Generator().manual_seed(3)
    lin = SupermaskLinear.from_dense(nn.Linear(6, 2, bias=False), 0.5, generator=gen)
    x = torch.randn(5, 6, generator=gen)
    lin(x).sum().backward()
    grad_w_eff = torch.ones(5, 2).T @ x  # d sum(x W^T) / d W
    expected = grad_w_eff * lin.weight.detach() * lin.scores.detach().sign()
    torch.testing.assert_close(lin.scores.grad, expected)


def test_conversion_keeps_weights_and_draws_scores_from_generator():
    net = small_net()
    before = [m.weight.detach().clone() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    state = torch.get_rng_state()
    to_supermask_(net, 0.3, seed=5)
    assert torch.equal(state, torch.get_rng_state()), "global RNG must not be used"
    layers = [m for _, m in supermask_layers(net)]
    assert [type(m) for m in layers] == [SupermaskConv2d, SupermaskLinear]
    for w, m in zip(before, layers):
        assert torch.equal(w, m.weight)
        bound = 1 / math.sqrt(m.weight[0].numel())  # kaiming_uniform(a=sqrt 5)
        assert m.scores.abs().max() <= bound and m.scores.abs().max() > 0.8 * bound
    again = to_supermask_(small_net(), 0.3, seed=5)
    other = to_supermask_(small_net(), 0.3, seed=6)
    s1, s2, s3 = (score_parameters(n)[0] for n in (net, again, other))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)


def _train_steps(seed: int, steps: int = 5) -> list[torch.Tensor]:
    net = to_supermask_(small_net(), 0.5, seed=seed)
    opt = torch.optim.SGD(score_parameters(net), lr=0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 3, 6, 6, generator=gen)
        y = torch.randint(0, 5, (16,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in score_parameters(net)]


def test_supermask_run_is_deterministic():
    a, b, c = _train_steps(0), _train_steps(0), _train_steps(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    # and the scores did move
    fresh = score_parameters(to_supermask_(small_net(), 0.5, seed=0))
    assert not all(torch.equal(x, y) for x, y in zip(a, fresh))


def test_to_pruned_dense_matches_outputs():
    net = build_model("conv2", 10)
    baseline_init_(net, "xavier_normal", seed=0)
    to_supermask_(net, 0.7, seed=0)
    # move the scores away from their init so the mask is not the initial one
    with torch.no_grad():
        for p in score_parameters(net):
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(2)) * 0.05)
    net.eval()
    dense = to_pruned_dense(net)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(dense(x), net(x))
    assert not any(isinstance(m, (SupermaskConv2d, SupermaskLinear)) for m in dense.modules())
    assert all(type(m) in (nn.Conv2d, nn.Linear) for n, m in dense.named_modules()
               if n.startswith(("conv", "fc")))
    # the dense model has exactly the kept weights non-zero (xavier weights are never 0)
    n_nonzero = sum(int((m.weight != 0).sum()) for m in dense.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert n_nonzero == sum(m.n_keep for _, m in supermask_layers(net))
    assert len(list(supermask_layers(net))) == 5, "the supermask model itself is untouched"


def test_set_prune_and_kept_fraction():
    net = to_supermask_(small_net(), 0.5, seed=0)
    set_prune_(net, 0.9)
    fr = kept_fraction(net)
    assert set(fr) == {"0", "3"}
    assert all(abs(v - 0.1) < 0.01 for v in fr.values())
    with pytest.raises(ValueError, match="prune"):
        set_prune_(net, 1.0)


def test_model_without_layers_rejected():
    with pytest.raises(ValueError, match="no nn.Conv2d or nn.Linear"):
        to_supermask_(nn.Sequential(nn.ReLU()), 0.5)


def _conv2_cifar10_run(data_root, control=None, model_seed=0, steps=None):
    """Conv2 supermask (50% pruned) trained by ``patchinit.train`` on CIFAR-10, images average-pooled
    to 16x16 (Conv2 built with input_size=16), Kaiming-normal weights (with which edge-popup learns
    fastest), the thesis's optimiser (lr 0.1, momentum 0.9, weight decay 1e-4), one epoch of
    CONV2_STEPS batches of 64 from a seeded random subset; scored on every 10th test image (1,000).

    ``control``: "shuffled labels" trains on a permutation of the training labels; "zero optimiser
    steps" scores the model as initialised (Conv2 has no batch norm, so this is what ``train`` gives
    when no step is taken).  Returns (test accuracy in %, model, weights before training).
    """
    from patchinit.data import DeviceBatches, load_dataset
    from patchinit.train import TrainConfig, evaluate, train

    train_set = load_dataset("cifar10", "train", root=data_root)
    test_set = load_dataset("cifar10", "test", root=data_root)

    def pooled(images):  # uint8 (N, 32, 32, 3) -> uint8 (N, 16, 16, 3), 2x2 means
        return np.rint(images.reshape(-1, 16, 2, 16, 2, 3).mean(axis=(2, 4))).astype(np.uint8)

    n = 64 * (steps or CONV2_STEPS)
    idx = np.sort(np.random.default_rng(0).permutation(len(train_set))[:n])
    labels = train_set.labels[idx]
    if control == "shuffled labels":
        labels = np.random.default_rng(1).permutation(labels)
    kw = dict(mean=train_set.mean, std=train_set.std)
    tr = DeviceBatches.from_arrays(pooled(train_set.images[idx]), labels, batch_size=64, **kw)
    te = DeviceBatches.from_arrays(pooled(test_set.images[::10]), test_set.labels[::10], batch_size=1000, **kw)
    model = baseline_init_(build_model("conv2", 10, input_size=16), "kaiming_normal", seed=model_seed)
    to_supermask_(model, 0.5, seed=model_seed)
    weights = [m.weight.clone() for _, m in supermask_layers(model)]
    if control == "zero optimiser steps":
        return evaluate(model, te)["test_acc"], model, weights
    cfg = TrainConfig(epochs=1, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="cosine")
    result = train(model, tr, te, cfg, seed=0, progress=False)
    assert len(result.metrics) == 1
    return result.final["test_acc"], model, weights


# Measured over model seeds 0-4 (CONV2_STEPS = 40): the working run scores 27.3-30.1%, the same run on
# shuffled labels 7.9-11.1%, and the untrained model 8.2-11.1% (chance: 10%).  CONV2_LEARNS = 18% is
# 6.6 binomial standard errors (1.4 points at 27% on 1,000 images) below the worst working seed and
# 7 (0.95 points at 10%) above the best control.
CONV2_STEPS = 40
CONV2_LEARNS = 18.0


@pytest.mark.slow  # about 5 s on the shared CPU, plus the CIFAR-10 decode if not cached
def test_conv2_supermask_learns_on_cifar10_subset(data_root):
    """Edge-popup through ``patchinit.train``: 40 SGD steps on the scores alone lift a Conv2 well
    above chance, and leave the weights and the kept fraction as they were."""
    acc, model, weights_before = _conv2_cifar10_run(data_root)
    assert acc > CONV2_LEARNS, f"accuracy {acc:.1f}% is not well above chance"
    assert all(torch.equal(w, m.weight) for w, (_, m) in zip(weights_before, supermask_layers(model)))
    assert all(abs(v - 0.5) < 1e-3 for v in kept_fraction(model).values())


@pytest.mark.slow
@pytest.mark.parametrize("control", ["zero optimiser steps", "shuffled labels"])
def test_conv2_supermask_negative_controls_stay_near_chance(data_root, control):
    acc, _, _ = _conv2_cifar10_run(data_root, control)
    assert 5 < acc < CONV2_LEARNS - 4, f"{control}: {acc:.1f}%"  # chance 10%, SE 0.95 points
