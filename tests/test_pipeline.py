"""The device-resident batch pipeline: shapes, determinism, crop and flip correctness."""
import numpy as np
import pytest
import torch

from patchinit.data.pipeline import DeviceBatches, augment_params, epoch_generator, hflip, random_crop


def _toy(n=50, h=8, w=8, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8), rng.integers(0, 10, n)


def _batches(**kw):
    imgs, labels = _toy()
    return DeviceBatches.from_arrays(imgs, labels, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), batch_size=16, **kw)


def test_layout_and_normalisation():
    imgs, labels = _toy()
    b = DeviceBatches.from_arrays(imgs, labels, mean=(0.5,) * 3, std=(0.25,) * 3, batch_size=16)
    assert b.images.dtype == torch.uint8 and b.images.shape == (50, 3, 8, 8)
    x, y = next(b.eval_batches(batch_size=50))
    expect = (imgs.transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(x.numpy(), expect, rtol=1e-5, atol=1e-5)
    assert y.dtype == torch.int64 and torch.equal(y, torch.as_tensor(labels))


def test_epoch_covers_every_example_once():
    b = _batches()
    seen = torch.cat([y for _, y in b.epoch(seed=3, epoch=0)])
    assert len(b) == 4 and len(seen) == 50
    order = b.order(3, 0)
    assert torch.equal(seen, b.labels[order])
    assert sorted(order.tolist()) == list(range(50))


def test_drop_last():
    b = _batches(drop_last=True)
    assert len(b) == 3 and sum(len(y) for _, y in b.epoch(0, 0)) == 48


def test_same_seed_same_batches_and_epochs_differ():
    b = _batches(augment=True)
    run = lambda s, e: [x for x, _ in b.epoch(s, e)]
    a1, a2, other_seed, other_epoch = run(1, 0), run(1, 0), run(2, 0), run(1, 1)
    assert all(torch.equal(p, q) for p, q in zip(a1, a2))
    assert not torch.equal(a1[0], other_seed[0])
    assert not torch.equal(a1[0], other_epoch[0])


def test_epoch_multi_matches_single_model_batches():
    b = _batches(augment=True)
    seeds = [4, 9, 4]
    single = {s: list(b.epoch(s, 2)) for s in set(seeds)}
    for i, (x, y) in enumerate(b.epoch_multi(seeds, 2)):
        assert x.shape[:2] == (3, y.shape[1])
        for m, s in enumerate(seeds):
            assert torch.equal(x[m], single[s][i][0])
            assert torch.equal(y[m], single[s][i][1])


def test_crop_on_synthetic_image():
    img = torch.zeros(1, 1, 6, 6, dtype=torch.uint8)
    img[0, 0, 0, 0] = 255  # a single bright pixel in the top-left corner
    pad = 4
    same = random_crop(img, torch.tensor([[pad, pad]]), pad)
    assert torch.equal(same, img)
    shifted = random_crop(img, torch.tensor([[pad - 2, pad - 1]]), pad)  # image moves down 2, right 1
    assert shifted[0, 0, 2, 1] == 255 and shifted.sum() == 255
    gone = random_crop(img, torch.tensor([[2 * pad, 2 * pad]]), pad)  # moves up-left by 4: pixel falls off
    assert gone.sum() == 0
    assert torch.equal(gone[0, 0, :2, :2], img[0, 0, 4:, 4:])


def test_flip_on_synthetic_image():
    img = torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(2, 1, 3, 4)
    out = hflip(img, torch.tensor([True, False]))
    assert torch.equal(out[0, 0], img[0, 0, :, [3, 2, 1, 0]])
    assert torch.equal(out[1], img[1])


def test_augment_params_ranges_and_flip_rate():
    offsets, flips = augment_params(4000, 4, True, epoch_generator(0, 0, 1))
    assert offsets.min() == 0 and offsets.max() == 8
    assert 0.45 < flips.float().mean() < 0.55
    _, none = augment_params(10, 4, False, epoch_generator(0, 0, 1))
    assert not none.any()


def test_augmented_batch_is_a_crop_and_flip_of_the_source():
    b = _batches(augment=True)
    x, _ = next(b.epoch(5, 0))
    perm = b.order(5, 0)[:16]
    offsets, flips = augment_params(50, 4, True, epoch_generator(5, 0, 1))
    raw = hflip(random_crop(b.images[perm], offsets[:16], 4), flips[:16])
    np.testing.assert_allclose(x.numpy(), ((raw.float() / 255 - 0.5) / 0.25).numpy(), atol=1e-6)


@pytest.mark.parametrize("kw, msg", [
    (dict(mean=(0.5,), std=(0.2,)), "channels"),
    (dict(mean=(0.5,) * 3, std=(0.2, 0.0, 0.2)), "positive"),
])
def test_bad_statistics(kw, msg):
    imgs, labels = _toy()
    with pytest.raises(ValueError, match=msg):
        DeviceBatches.from_arrays(imgs, labels, **kw)


def test_bad_images():
    with pytest.raises(TypeError, match="uint8"):
        DeviceBatches.from_arrays(np.zeros((2, 4, 4, 1), np.float32), [0, 1], (0.5,), (0.5,))
    with pytest.raises(ValueError, match="labels"):
        DeviceBatches.from_arrays(np.zeros((2, 4, 4, 1), np.uint8), [0], (0.5,), (0.5,))
