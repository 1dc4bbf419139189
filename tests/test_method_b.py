"""Method B pieces: selective-search box patches, activation patches, PatchesInit."""
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from patchinit.init import baseline_init_
from patchinit.init.method_b import (
    MethodBConfig,
    choose_patterns,
    conv_map_sizes,
    criteria,
    patches_init_,
    scale_patterns,
    xavier_counts,
)
from patchinit.models import build_model
from patchinit.patches.activations import activation_patches, layer_input
from patchinit.patches.boxes import (
    box_positions,
    sample_box_patches,
    selective_search_boxes,
    selective_search_many,
)


@pytest.fixture(autouse=True)
def _single_thread():
    """On a shared, oversubscribed 2-core machine, 2 BLAS/torch threads run many times
    slower than one (busy-waiting thread pools); one thread keeps the file fast."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(old)


def blocky_images(n: int, seed: int = 0, size: int = 32) -> np.ndarray:
    """Images of coloured blocks plus noise: selective search finds regions in them."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    imgs = np.repeat(np.repeat(coarse, size // 4, axis=1), size // 4, axis=2)
    imgs += rng.normal(0, 12, imgs.shape)
    return np.clip(imgs, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------- boxes
def test_box_positions_by_hand():
    v = box_positions(np.array([[2, 3, 5, 4]]), (10, 10), 3)  # x=2, y=3, w=5, h=4
    assert v.shape == (8, 8)
    assert set(zip(*np.nonzero(v))) == {(r, c) for r in (3, 4) for c in (2, 3, 4)}
    assert not box_positions(np.array([[0, 0, 2, 9]]), (10, 10), 3).any()  # narrower than the filter
    assert box_positions(np.array([[7, 7, 9, 9]]), (10, 10), 3).sum() == 1  # clipped at the border
    assert not box_positions(np.zeros((0, 4)), (10, 10), 3).any()


def test_selective_search_drops_large_boxes():
    img = blocky_images(1, seed=3)[0]
    kept = selective_search_boxes(img, max_fraction=0.5)
    every = selective_search_boxes(img, max_fraction=1.0)
    assert len(kept) >= 1 and len(every) > len(kept)
    assert (kept[:, 2] * kept[:, 3] <= 0.5 * 32 * 32).all()
    assert (kept[:, :2] >= 0).all() and (kept[:, 0] + kept[:, 2] <= 32).all() and (kept[:, 1] + kept[:, 3] <= 32).all()
    with pytest.raises(ValueError, match="max_fraction"):
        selective_search_boxes(img, max_fraction=0)


def test_selective_search_many_threads_match_serial_and_restore_cv2_threads():
    imgs = blocky_images(6, seed=1)
    before = cv2.getNumThreads()
    serial = selective_search_many(imgs, [5, 0, 2], workers=1, progress=False)
    threaded = selective_search_many(imgs, [5, 0, 2], workers=2, progress=False)
    assert cv2.getNumThreads() == before
    assert len(serial) == 3 and all(np.array_equal(a, b) for a, b in zip(serial, threaded))
    assert np.array_equal(serial[0], selective_search_boxes(imgs[5]))


def test_sample_box_patches_inside_boxes_distinct_and_fallback():
    imgs = blocky_images(3, seed=2)
    boxes = [np.array([[4, 6, 12, 10]]), np.zeros((0, 4), np.int64), np.array([[0, 0, 32, 16]])]
    out = sample_box_patches(imgs, [0, 1, 2], boxes, 3, 20, seed=0)
    ps = out.patchset
    assert ps.patches.shape == (60, 3, 3, 3) and ps.patches.dtype == np.uint8
    assert out.n_whole_image == 1  # image 1 has no box
    pos0 = ps.positions[ps.image_index == 0]
    assert len({tuple(p) for p in pos0}) == 20, "without replacement"
    assert ((pos0[:, 0] >= 6) & (pos0[:, 0] <= 6 + 10 - 3) & (pos0[:, 1] >= 4) & (pos0[:, 1] <= 4 + 12 - 3)).all()
    pos2 = ps.positions[ps.image_index == 2]
    assert (pos2[:, 0] <= 16 - 3).all()
    r, c = ps.positions[0]
    assert np.array_equal(ps.patches[0], imgs[0, r:r + 3, c:c + 3].transpose(2, 0, 1))
    again = sample_box_patches(imgs, [0, 1, 2], boxes, 3, 20, seed=0).patchset
    assert np.array_equal(again.positions, ps.positions)
    with pytest.raises(ValueError, match="per_image"):
        sample_box_patches(imgs, [0], boxes[:1], 3, 901, seed=0)


# ----------------------------------------------------------- activations
def test_layer_input_is_what_the_conv_receives():
    model = baseline_init_(build_model("conv4", 10), "xavier_normal", seed=0)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got = layer_input(model, "conv3", x)
    want = F.max_pool2d(F.relu(model.conv2(F.relu(model.conv1(x)))), 2)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(layer_input(model, "conv1", x), x)
    assert model.training, "mode restored"
    with pytest.raises(ValueError, match="no layer"):
        layer_input(model, "conv9", x)
    with pytest.raises(ValueError, match="never reached"):
        _unreached()


def _unreached():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return x

    layer_input(Skip(), "unused", torch.zeros(1, 3, 4, 4))


def test_activation_patches_are_padded_windows_of_the_map():
    model = baseline_init_(build_model("conv6", 10), "xavier_normal", seed=0)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = activation_patches(model, "conv6", x, per_image=50, seed=0, image_index=[10, 11, 12, 13],
                             batch_size=3, progress=False)
    ps = out.patchset
    assert out.map_shape == (256, 8, 8)
    assert ps.patches.shape == (200, 256, 3, 3) and ps.patches.dtype == np.float32
    assert np.array_equal(np.unique(ps.image_index), [10, 11, 12, 13])
    padded = F.pad(layer_input(model, "conv6", x), (1, 1, 1, 1)).numpy()
    for i in (0, 77, 199):
        img = ps.image_index[i] - 10
        r, c = ps.positions[i] + 1
        np.testing.assert_allclose(ps.patches[i], padded[img, :, r:r + 3, c:c + 3], atol=1e-6)  # batch of 3 vs 4
    for img in range(10, 14):  # 50 distinct windows of the 64 the padded 8x8 map offers
        assert len({tuple(p) for p in ps.positions[ps.image_index == img]}) == 50
    with pytest.raises(ValueError, match="per_image=65"):
        activation_patches(model, "conv6", x, per_image=65, seed=0, progress=False)
    with pytest.raises(ValueError, match="nn.Conv2d"):
        activation_patches(model, "fc1", x, per_image=5, seed=0, progress=False)


# ------------------------------------------------------- scaling and D
def test_scale_patterns_by_hand():
    pattern = np.arange(27, dtype=np.float32).reshape(1, 3, 3, 3)
    # mean 13, population std sqrt((27^2 - 1) / 12); factor sqrt(2) / sqrt(27 + 576) for a 3->64 conv
    want = (np.arange(27) - 13) / math.sqrt((27 ** 2 - 1) / 12) * math.sqrt(2) / math.sqrt(27 + 576)
    got = scale_patterns(pattern, 27, 576)
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-6)
    assert abs(got.mean()) < 1e-7 and abs(got.std() - math.sqrt(2 / 603)) < 1e-7
    with pytest.raises(ValueError, match="constant"):
        scale_patterns(np.ones((2, 3, 3, 3)), 27, 576)


def test_xavier_counts_are_fans_and_match_xavier_normal_std():
    conv = nn.Conv2d(3, 64, 3)
    assert xavier_counts(conv) == (27, 576)
    assert xavier_counts(conv, "channels") == (3, 64)
    w = torch.empty(256, 128, 3, 3)
    nn.init.xavier_normal_(w, generator=torch.Generator().manual_seed(0))
    n_prev, n_next = xavier_counts(nn.Conv2d(128, 256, 3))
    assert abs(w.std().item() - math.sqrt(2) / math.sqrt(n_prev + n_next)) < 1e-3


def test_neuron_counts_use_the_map_sizes():
    model = build_model("conv6", 10)
    maps = conv_map_sizes(model, (3, 32, 32), model.conv_names)
    assert maps["conv1"] == ((32, 32), (32, 32)) and maps["conv3"] == ((16, 16), (16, 16))
    assert maps["conv6"] == ((8, 8), (8, 8))
    # conv3 of Conv6: 64 channels of 16x16 in, 128 of 16x16 out
    assert xavier_counts(model.conv3, "neurons", maps["conv3"]) == (64 * 256, 128 * 256)
    strided = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    assert conv_map_sizes(nn.Sequential(strided), (4, 10, 10), ["0"])["0"] == ((10, 10), (5, 5))
    with pytest.raises(ValueError, match="map sizes"):
        xavier_counts(model.conv3, "neurons")

    class OneUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Conv2d(3, 4, 3), nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match="not reached"):
        conv_map_sizes(OneUnused(), (3, 8, 8), ["used", "unused"])
    with pytest.raises(ValueError, match="scaling"):
        MethodBConfig(scaling="fans")


@pytest.mark.parametrize("scaling", ["neurons", "fan", "channels"])
def test_every_reading_of_n_gives_its_own_filter_std(scaling, synthetic):
    imgs, labels = synthetic
    model = build_model("conv2", 10)
    recs = patches_init_(model, imgs, labels, baseline="xavier_normal", P=2000, C=100, seed=0, config=MethodBConfig(scaling=scaling),
                         progress=False)
    _check_filters(model, recs, scaling)


def test_criteria_follow_D():
    assert criteria(6, None) == ["high"] * 5 + ["low"]  # 5C-1D, the default
    assert criteria(6, 1) == ["low"] * 6  # 0C-6D
    assert criteria(6, 4) == ["high"] * 3 + ["low"] * 3  # 3C-3D
    assert criteria(6, 7) == ["high"] * 6  # 6C-0D
    for bad in (0, 8, 2.5, True, "6"):
        with pytest.raises(ValueError, match="D must be"):
            criteria(6, bad)


# ------------------------------------------------------ cluster choice
def _hand_made_clusters(zero_group: bool = False):
    """Four well-separated groups of 40 patches with known class mixes.

    A: 8 classes x 5 (3 bits), B: 2 classes x 20 (1 bit), C: one class (0 bits),
    D: 30 of one class + 10 of another (0.811 bits).
    """
    rng = np.random.default_rng(0)
    centres = np.zeros((4, 27), np.float32)
    for g in range(4):
        centres[g, g * 6:(g + 1) * 6] = 20.0
    X = np.concatenate([centres[g] + rng.normal(0, 0.3, (40, 27)) for g in range(4)]).astype(np.float32)
    if zero_group:
        X[:40] = 0.0
    group = np.repeat(np.arange(4), 40)
    classes = np.concatenate([np.repeat(np.arange(8), 5), np.repeat([0, 1], 20), np.full(40, 2),
                              np.r_[np.full(30, 3), np.full(10, 0)]])
    return X.reshape(-1, 3, 3, 3), classes, group


def _groups_of(patterns, X, group):
    flat = X.reshape(len(X), -1)
    return [int(group[np.argmin(((flat - p.reshape(-1)) ** 2).sum(1))]) for p in patterns]


def test_choose_patterns_entropy_and_selection_follow_criterion():
    X, classes, group = _hand_made_clusters()
    cfg = MethodBConfig(n_components=5)
    high = choose_patterns(X, classes, 2, 4, "high", cfg, seed=0)
    low = choose_patterns(X, classes, 2, 4, "low", cfg, seed=0)
    np.testing.assert_allclose(high.entropy, [3.0, 1.0])
    np.testing.assert_allclose(low.entropy, [0.0, -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))])
    assert _groups_of(high.patterns, X, group) == [0, 1]
    assert _groups_of(low.patterns, X, group) == [2, 3]
    # the pattern is an actual member (original space), not the centroid
    assert any(np.array_equal(high.patterns[0], x) for x in X)
    assert high.n_kept == 4 and high.n_degenerate == 0 and set(high.times) == {"pca", "kmeans", "selection"}
    simple = choose_patterns(X, classes, 4, 4, "simple", cfg, seed=0)
    assert sorted(_groups_of(simple.patterns, X, group)) == [0, 1, 2, 3]


def test_constant_pattern_cluster_is_skipped():
    X, classes, group = _hand_made_clusters(zero_group=True)  # group A (3 bits) is all zeros
    high = choose_patterns(X, classes, 2, 4, "high", MethodBConfig(n_components=5), seed=0)
    assert high.n_degenerate == 1
    assert _groups_of(high.patterns, X, group) == [1, 3]  # next in entropy order: 1 bit, 0.811 bits


def test_shortfall_returns_fewer_patterns():
    X, classes, _ = _hand_made_clusters()
    out = choose_patterns(X, classes, 6, 4, "high", MethodBConfig(n_components=5), seed=0)
    assert len(out.patterns) == 4


# ------------------------------------------------------------ PatchesInit
@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    return blocky_images(120, seed=0), rng.integers(0, 10, 120)


def _check_filters(model, records, scaling="fan", image_shape=(3, 32, 32)):
    maps = conv_map_sizes(model, image_shape, [r.layer for r in records])
    for rec in records:
        conv = model.get_submodule(rec.layer)
        w = conv.weight.detach().reshape(conv.out_channels, -1)[:rec.n_selected]
        target = math.sqrt(2) / math.sqrt(sum(xavier_counts(conv, scaling, maps[rec.layer])))
        torch.testing.assert_close(w.mean(1), torch.zeros(len(w)), atol=1e-6, rtol=0)
        torch.testing.assert_close(w.std(1, unbiased=False), torch.full((len(w),), target), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["conv2", "conv4"])
def test_patches_init_shapes_fc_baseline_and_records(name, synthetic):
    imgs, labels = synthetic
    model = build_model(name, 10)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    records = patches_init_(model, imgs, labels, baseline="xavier_normal", P=3000, C=150, seed=3, mean=(0.5, 0.5, 0.5),
                            std=(0.25, 0.25, 0.25), workers=2, progress=False)
    assert {n: p.shape for n, p in model.named_parameters()} == shapes
    assert [r.layer for r in records] == model.conv_names
    assert [r.criterion for r in records] == ["high"] * (len(records) - 1) + ["low"]
    ref = baseline_init_(build_model(name, 10), "xavier_normal", seed=3)
    for fc in ("fc1", "fc2", "fc3"):
        assert torch.equal(model.get_submodule(fc).weight, ref.get_submodule(fc).weight)
    for rec in records:
        conv = model.get_submodule(rec.layer)
        assert not torch.equal(conv.weight, ref.get_submodule(rec.layer).weight)
        assert rec.patch_shape == tuple(conv.weight.shape[1:])
        assert rec.n_patches == 3000 and rec.n_images == 60 and rec.n_clusters == 150
        assert rec.n_selected == conv.out_channels and rec.n_baseline_filters == 0
        assert rec.n_clusters_kept <= 150 and 0 <= rec.mean_entropy_selected <= math.log2(10)
        assert set(rec.times) >= {"pca", "kmeans", "selection"}
    assert set(records[0].times) >= {"selective_search", "patch_sampling"}
    assert "activation_forward" in records[1].times
    _check_filters(model, records)


def test_patches_init_is_deterministic_and_seeded(synthetic):
    imgs, labels = synthetic

    def run(seed):
        m = build_model("conv2", 10)
        recs = patches_init_(m, imgs, labels, baseline="xavier_normal", P=2000, C=100, seed=seed, progress=False)
        return m, recs

    (a, ra), (b, rb), (c, _) = run(0), run(0), run(1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert [r.entropy_selected for r in ra] == [r.entropy_selected for r in rb]
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_chain_fast_path_equals_generic_forward(synthetic):
    """ConvNet.forward_from (cached maps) gives the same init as full forward passes."""
    imgs, labels = synthetic

    class Wrapped(nn.Module):  # hides forward_from: PatchesInit must run from the images
        def __init__(self):
            super().__init__()
            self.net = build_model("conv4", 10)

        def forward(self, x):
            return self.net(x)

    fast, slow = build_model("conv4", 10), Wrapped()
    assert not hasattr(slow, "forward_from")
    kw = dict(P=2000, C=140, seed=2, progress=False,
              config=MethodBConfig(forward_batch=25, shortfall="baseline"))
    ra = patches_init_(fast, imgs, labels, baseline="xavier_normal", **kw)
    rb = patches_init_(slow, imgs, labels, baseline="xavier_normal", layers=[f"net.conv{i}" for i in range(1, 5)], **kw)
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p, slow.get_parameter("net." + name), atol=1e-6, rtol=1e-5)
    assert [r.entropy_selected for r in ra] == [r.entropy_selected for r in rb]


def test_D_and_simple_init(synthetic):
    imgs, labels = synthetic
    recs = patches_init_(build_model("conv2", 10), imgs, labels, baseline="xavier_normal", P=2000, C=100, D=1, seed=0, progress=False)
    assert [r.criterion for r in recs] == ["low", "low"]
    model = build_model("conv2", 10)
    simple = patches_init_(model, imgs, labels, baseline="xavier_normal", P=1000, C=999, seed=0, simple=True, progress=False,
                           config=MethodBConfig(shortfall="baseline"))
    assert [r.criterion for r in simple] == ["simple", "simple"]
    assert [r.n_clusters for r in simple] == [64, 64]
    assert all(r.n_selected + r.n_baseline_filters == 64 for r in simple)
    _check_filters(model, simple)


def test_shortfall_raises_naming_P_and_C_or_keeps_baseline(synthetic):
    imgs, labels = synthetic
    with pytest.raises(ValueError, match=r"P=500 patches and C=40 clusters"):
        patches_init_(build_model("conv2", 10), imgs, labels, baseline="xavier_normal", P=500, C=40, seed=0, progress=False)
    model = build_model("conv2", 10)
    recs = patches_init_(model, imgs, labels, baseline="xavier_normal", P=500, C=40, seed=0, progress=False,
                         config=MethodBConfig(shortfall="baseline"))
    ref = baseline_init_(build_model("conv2", 10), "xavier_normal", seed=0)
    for rec in recs:
        assert rec.n_selected <= 40 and rec.n_baseline_filters == 64 - rec.n_selected
        conv = model.get_submodule(rec.layer)
        assert torch.equal(conv.weight[rec.n_selected:], ref.get_submodule(rec.layer).weight[rec.n_selected:])


def test_patches_init_argument_errors(synthetic):
    imgs, labels = synthetic
    model = build_model("conv2", 10)
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match="P=50000"):
        patches_init_(model, imgs, labels, baseline="xavier_normal", P=50_000, C=10, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "checked before any write"
    with pytest.raises(ValueError, match="seed"):
        patches_init_(model, imgs, labels, baseline="xavier_normal", P=100, C=10, seed=None, progress=False)
    with pytest.raises(ValueError, match="labels"):
        patches_init_(model, imgs, labels[:5], baseline="xavier_normal", P=100, C=10, progress=False)
    with pytest.raises(ValueError, match="uint8"):
        patches_init_(model, imgs.astype(np.float32), labels, P=100, C=10, progress=False)
    with pytest.raises(ValueError, match="D must be"):
        patches_init_(model, imgs, labels, baseline="xavier_normal", P=100, C=10, D=4, progress=False)
    with pytest.raises(ValueError, match="mean must be in"):
        patches_init_(model, imgs, labels, baseline="xavier_normal", P=100, C=10, mean=(125, 122, 113), progress=False)
    with pytest.raises(ValueError, match="C must be"):
        patches_init_(model, imgs, labels, baseline="xavier_normal", P=100, C=0, progress=False)


@pytest.mark.slow  # decodes CIFAR-10 once per session (about 7 s) when no other test has
def test_patches_init_on_real_cifar_subset(data_root):
    from patchinit.data import load_dataset

    train = load_dataset("cifar10", "train", root=data_root)
    idx = np.random.default_rng(0).choice(len(train), 400, replace=False)
    model = build_model("conv4", 10)
    records = patches_init_(model, train.images[idx], train.labels[idx], baseline="xavier_normal", P=3000, C=150, seed=0,
                            mean=train.mean, std=train.std, progress=False)
    assert [r.n_selected for r in records] == [64, 64, 128, 128]
    _check_filters(model, records)
    # layer 1 draws 3x3x3 patches inside selective-search boxes of 60 images
    assert records[0].patch_shape == (3, 3, 3) and records[0].n_images == 60
    assert records[0].mean_boxes > 1 and records[0].n_whole_image < 30
    # the last layer (D) takes the low-entropy clusters, the others the high ones
    assert records[-1].mean_entropy_selected < min(r.mean_entropy_selected for r in records[:-1])


def test_keep_clusters_records_the_whole_clustering(synthetic):
    from patchinit import cluster

    imgs, labels = synthetic
    model = build_model("conv2", 10)
    recs = patches_init_(model, imgs, labels, baseline="xavier_normal", P=2000, C=100, seed=0, progress=False,
                         config=MethodBConfig(keep_clusters=True))
    plain = patches_init_(build_model("conv2", 10), imgs, labels, baseline="xavier_normal", P=2000, C=100, seed=0, progress=False)
    for rec, ref in zip(recs, plain):
        c = rec.clusters
        assert ref.clusters is None and "clusters" not in rec.as_dict()
        assert c.labels.shape == c.classes.shape == c.image_index.shape == (2000,)
        np.testing.assert_array_equal(c.classes, labels[c.image_index])
        np.testing.assert_allclose(c.entropy, cluster.cluster_entropy(c.labels, c.classes, c.n_clusters))
        kept = np.sort(c.entropy[c.kept])
        assert set(np.round(rec.entropy_selected, 9)) <= set(np.round(kept, 9))
        extreme = max if rec.criterion == "high" else min
        assert extreme(rec.entropy_selected) == pytest.approx(extreme(kept))
        assert rec.entropy_selected == ref.entropy_selected  # recording changes nothing


def test_match_random_std_gives_each_layer_the_baselines_output_std_and_keeps_directions(synthetic):
    """Our variance-preserving extension: every conv's output std on the probe batch equals the std the
    Xavier-normal (Random) filters give on the same input; the filters point where eq. 4.2's do."""
    imgs, labels = synthetic
    kw = dict(P=3000, C=150, seed=1, mean=(0.5,) * 3, std=(0.25,) * 3, progress=False)
    torch.set_grad_enabled(False)
    plain, matched = build_model("conv4", 10), build_model("conv4", 10)  # four convs: scale drifts with depth
    recs_plain = patches_init_(plain, imgs, labels, baseline="xavier_normal", **kw)
    recs = patches_init_(matched, imgs, labels, baseline="xavier_normal", config=MethodBConfig(match_random_std=True, probe_images=40), **kw)
    assert all(r.gain is None for r in recs_plain) and all(r.gain > 0 for r in recs)
    x = torch.from_numpy(((imgs[:40] / 255.0 - 0.5) / 0.25).astype(np.float32)).permute(0, 3, 1, 2)
    random = baseline_init_(build_model("conv4", 10), "xavier_normal", seed=1)
    for rec in recs:
        inp = x if rec.index == 1 else layer_input(matched, rec.layer, x)
        conv, ref = matched.get_submodule(rec.layer), random.get_submodule(rec.layer)
        ratio = float(conv(inp).std() / ref(inp).std())
        # the probe batch is the sampled images, not these 40: equal up to sampling noise
        assert 0.8 < ratio < 1.25, (rec.layer, ratio)
        a = plain.get_submodule(rec.layer).weight.reshape(conv.out_channels, -1)
        b = conv.weight.reshape(conv.out_channels, -1)
        if rec.index == 1:  # the same patches, so the same directions (later layers see rescaled inputs)
            torch.testing.assert_close(F.cosine_similarity(a, b, dim=1), torch.ones(len(a)), atol=1e-5, rtol=0)
    # without matching, the patch filters' output scale drifts from Random's with depth
    drift = []
    for rec in recs_plain:
        inp = x if rec.index == 1 else layer_input(plain, rec.layer, x)
        drift.append(float(plain.get_submodule(rec.layer)(inp).std() / random.get_submodule(rec.layer)(inp).std()))
    torch.set_grad_enabled(True)
    assert max(abs(math.log(d)) for d in drift) > 0.1
