"""The patch engine on a user's own model: method A and method B as recipes over shared parts."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from patchinit.data.pipeline import DeviceBatches
from patchinit.init import MethodBConfig, Normaliser, baseline_init_, conv_layers, method_a_init_, patches_init_
from patchinit.init.method_b import partial_options
from patchinit.patches.activations import layer_input

FAST_A = dict(reducer="pca", n_components=5, n_init=2, patch_size=14, stride=7, min_pixels=5, progress=False)
FAST_B = dict(P=400, C=20, config=MethodBConfig(shortfall="baseline", per_image=20), progress=False)


class UserNet(nn.Module):
    """Not one of ours: a conv body and a Linear head."""

    def __init__(self, c_in=1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        return self.head(self.body(x))


def _images(n=60, c=1, size=28, seed=0):
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size, c), np.uint8)
    for i in range(n):
        y, x = rng.integers(4, size - 10, 2)
        imgs[i, y:y + 8, x:x + rng.integers(3, 9)] = rng.integers(120, 255, c)
    return imgs + rng.integers(0, 30, imgs.shape, dtype=np.uint8), rng.integers(0, 4, n)


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_method_a_on_a_user_model_leaves_the_head_and_writes_the_listed_layers():
    net, (imgs, _) = UserNet(), _images()
    before = _state(net)
    recs = method_a_init_(net, imgs, layers=["body.0", "body.3"], **FAST_A)
    assert [r.layer for r in recs] == ["body.0", "body.3"] and [r.mapping for r in recs] == ["image", "activations"]
    assert torch.equal(net.head.weight, before["head.weight"]) and torch.equal(net.head.bias, before["head.bias"])
    assert torch.equal(net.body[0].bias, before["body.0.bias"])  # biases are not filters
    assert not torch.equal(net.body[0].weight, before["body.0.weight"])
    assert not torch.equal(net.body[3].weight, before["body.3.weight"])


def test_method_a_a_non_first_layer_gets_its_real_input_maps():
    net, (imgs, _) = UserNet(), _images()
    before = _state(net)
    (rec,) = method_a_init_(net, imgs, layers=[net.body[3]], **dict(FAST_A, min_pixels=0))
    assert rec.layer == "body.3" and rec.mapping == "activations"
    assert torch.equal(net.body[0].weight, before["body.0.weight"])  # not listed: untouched
    # the patches are windows of what body.3 receives: 8 channels of ReLU + max-pool maps, 14x14
    x = Normaliser(1, rec.options["mean"], rec.options["std"]).images(imgs)  # the images' measured statistics
    maps = layer_input(net, "body.3", x, batch_norm="batch").numpy()
    assert rec.chosen_patches.shape[2] == 8 and (rec.chosen_patches >= 0).all()
    i, size = int(rec.chosen_image_index[0, 0]), rec.options["activation_patch_size"]
    windows = [maps[i, :, y:y + size, x:x + size] for y in range(0, 14 - size + 1, rec.options["activation_stride"])
               for x in range(0, 14 - size + 1, rec.options["activation_stride"])]
    assert any(np.array_equal(w, rec.chosen_patches[0, 0]) for w in windows)


def test_method_b_on_a_user_model_leaves_the_head_and_takes_windows_for_a_non_first_layer():
    net, (imgs, labels) = UserNet(3), _images(c=3, size=32)
    before = _state(net)
    (rec,) = patches_init_(net, imgs, labels, layers=["body.3"], seed=0, **FAST_B)
    assert rec.layer == "body.3" and rec.patch_shape == (8, 3, 3)
    assert "selective_search" not in rec.times and rec.times["activation_forward"] >= 0  # maps, not boxes
    assert torch.equal(net.head.weight, before["head.weight"]) and torch.equal(net.body[0].weight, before["body.0.weight"])
    assert not torch.equal(net.body[3].weight, before["body.3.weight"])
    recs = patches_init_(net, imgs, labels, seed=0, **FAST_B)  # default: every conv, the first from boxes
    assert [r.layer for r in recs] == ["body.0", "body.3"] and "selective_search" in recs[0].times
    assert torch.equal(net.head.weight, before["head.weight"])


def test_baseline_name_reinitialises_the_other_layers_first():
    net, (imgs, labels) = UserNet(3), _images(c=3, size=32)
    patches_init_(net, imgs, labels, layers=["body.0"], baseline="xavier_normal", seed=4, **FAST_B)
    ref = baseline_init_(UserNet(3), "xavier_normal", seed=4)
    assert torch.equal(net.head.weight, ref.head.weight) and torch.equal(net.body[3].weight, ref.body[3].weight)
    net = UserNet()
    method_a_init_(net, _images()[0], baseline="kaiming_normal", seed=2, **FAST_A)
    ref = baseline_init_(UserNet(), "kaiming_normal", seed=2)
    assert torch.equal(net.head.weight, ref.head.weight) and not torch.equal(net.body[0].weight, ref.body[0].weight)


def test_unknown_or_wrong_layers_name_the_available_convs():
    imgs, labels = _images(c=3, size=32)
    with pytest.raises(ValueError, match=r"'body\.9' does not exist.*\['body\.0', 'body\.3'\]"):
        method_a_init_(UserNet(3), imgs, layers=["body.9"], **FAST_A)
    with pytest.raises(ValueError, match=r"'head' is not a Conv2d.*\['body\.0', 'body\.3'\]"):
        patches_init_(UserNet(3), imgs, labels, layers=["head"], **FAST_B)
    with pytest.raises(ValueError, match="not a module of UserNet"):
        patches_init_(UserNet(3), imgs, labels, layers=[nn.Conv2d(3, 8, 3)], **FAST_B)


def test_layers_are_taken_bottom_up_in_forward_order():
    class Backwards(nn.Module):  # registers its convs in the opposite order to the one it runs them
        def __init__(self):
            super().__init__()
            self.late, self.early = nn.Conv2d(4, 4, 3), nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.late(torch.relu(self.early(x)))

    m = Backwards()
    assert conv_layers(m) == ["late", "early"]
    assert conv_layers(m, torch.zeros(1, 1, 12, 12)) == ["early", "late"]
    recs = method_a_init_(m, _images()[0], layers=["late", "early"], **dict(FAST_A, n_components=2, patch_size=8))
    assert [r.layer for r in recs] == ["early", "late"] and recs[0].mapping == "image"


def test_one_normaliser_for_training_batches_and_patches():
    imgs, labels = _images(20, c=3, size=16)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    x, _ = next(DeviceBatches.from_arrays(imgs, labels, mean, std, batch_size=20).eval_batches())
    norm = Normaliser(3, mean, std)
    assert torch.equal(x, norm.images(imgs))
    assert np.array_equal(norm.patches(imgs.transpose(0, 3, 1, 2)), x.numpy())
    assert torch.equal(Normaliser(3).images(imgs), torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0)


def test_partial_options_are_the_resnet_partial_layers():
    from patchinit.models.resnet import resnet18_partial_layers

    for blocks in (1, 2, 3, 4):
        assert partial_options(blocks)["layers"] == resnet18_partial_layers(blocks)


def test_models_do_not_import_the_init_package():
    code = ("import sys, patchinit.models.lenet, patchinit.models.conv, patchinit.models.resnet; "
            "bad = [m for m in sys.modules if m.startswith('patchinit.init')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
