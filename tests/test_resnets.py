"""Fixup ResNet-20 and the two ResNet-18 layouts: sizes, layouts, init, forward, learning."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from patchinit.models import available, build_model
from patchinit.models.fixup import (FixupBasicBlock, FixupResNet, fixup_blocks, fixup_case_layers,
                                    fixup_init_, param_groups)
from patchinit.models.resnet import conv_layer_names, make_generator, resnet18_partial_layers


def n_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def fixup():
    return build_model("fixup_resnet20", 10, seed=3)


@pytest.fixture(scope="module")
def r18():
    return build_model("resnet18", 10, seed=0).eval()


@pytest.fixture(scope="module")
def r18_thesis():
    return build_model("resnet18_thesis", 200, seed=0).eval()


def forward_conv_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of Conv2d layers in the order they actually run."""
    order, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: order.append(name)))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return order


# ----------------------------------------------------------------------------- registry

def test_registered():
    assert {"fixup_resnet20", "resnet18", "resnet18_thesis"} <= set(available())


# ----------------------------------------------------------------------------- Fixup ResNet-20

def test_fixup_parameter_count(fixup):
    assert n_trainable(fixup) == 268_393  # the paper's number (and the reference's)


def test_fixup_layout(fixup):
    assert isinstance(fixup, FixupResNet) and fixup.num_branches == 9
    names = conv_layer_names(fixup)
    assert len(names) == 19  # stem + 9 blocks x 2; with fc: 20 weight layers
    assert names[0] == "conv1" and names[-1] == "layer3.2.conv2"
    widths = [fixup.get_submodule(n).out_channels for n in names]
    assert widths == [16] * 7 + [32] * 6 + [64] * 6
    assert fixup.fc.in_features == 64 and fixup.fc.bias is not None
    # shortcuts carry no parameters: everything is a conv, fc, or a 1-element scalar
    for name, p in fixup.named_parameters():
        assert name.endswith(".weight") or name == "fc.bias" or p.numel() == 1, name
    scalars = [n for n, p in fixup.named_parameters() if p.numel() == 1]
    assert len(scalars) == 9 * 5 + 2


def test_fixup_conv_names_are_forward_order(fixup):
    assert forward_conv_order(fixup, torch.zeros(1, 3, 32, 32)) == conv_layer_names(fixup)


def test_fixup_zero_layers_and_scalars(fixup):
    for _, block in fixup_blocks(fixup):
        assert torch.count_nonzero(block.conv2.weight) == 0
        for p in (block.bias1a, block.bias1b, block.bias2a, block.bias2b):
            assert p.item() == 0.0
        assert block.scale.item() == 1.0
        assert torch.count_nonzero(block.conv1.weight) == block.conv1.weight.numel()
    assert torch.count_nonzero(fixup.fc.weight) == 0 and torch.count_nonzero(fixup.fc.bias) == 0
    assert fixup.bias1.item() == 0.0 and fixup.bias2.item() == 0.0


def test_fixup_branch_std_is_he_fan_out_over_sqrt_L(fixup):
    """std = sqrt(2/fan_out) * 9^(-1/2), as the reference (fan_out = out_channels*3*3)."""
    z = []
    for _, block in fixup_blocks(fixup):
        w = block.conv1.weight.detach()
        expected = math.sqrt(2.0 / (w.shape[0] * 9)) / 3.0
        z.append((w / expected).flatten())
        if w.numel() >= 4608:  # enough draws for a per-layer check
            assert w.std().item() == pytest.approx(expected, rel=0.05)
            assert abs(w.mean().item()) < 0.1 * expected
    assert torch.cat(z).std().item() == pytest.approx(1.0, rel=0.02)
    # the transition block distinguishes fan-out from fan-in (ratio sqrt 2)
    w = fixup.layer2[0].conv1.weight
    fan_in_std = math.sqrt(2.0 / (16 * 9)) / 3.0
    assert w.std().item() < 0.8 * fan_in_std


def test_fixup_stem_is_pytorch_default(fixup):
    w = fixup.conv1.weight
    bound = 1.0 / math.sqrt(27)
    assert w.abs().max().item() <= bound
    assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2)  # U(-b, b)


def test_fixup_logits_zero_at_init(fixup):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = fixup(x)
    assert out.shape == (4, 10)
    assert torch.count_nonzero(out) == 0
    assert F.cross_entropy(out, torch.arange(4)).item() == pytest.approx(math.log(10))


def test_fixup_fresh_network_is_its_shortcut_path(fixup):
    """Zero branches: the features are the stem, subsampled and zero-padded twice."""
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        stem = F.relu(fixup.conv1(x))
        expected = torch.zeros(2, 64, 8, 8)
        expected[:, :16] = stem[:, :, ::4, ::4]
        feats = fixup.features(x)
        block_in = torch.rand(2, 16, 9, 9)  # non-negative, as after a ReLU; odd size
        identity_out = fixup.layer1[1](block_in)
        down_out = fixup.layer2[0](block_in)
    assert torch.allclose(feats, expected.mean(dim=(2, 3)), atol=1e-6)
    assert torch.equal(identity_out, block_in)
    assert down_out.shape == (2, 32, 5, 5)
    assert torch.equal(down_out[:, :16], block_in[:, :, ::2, ::2])
    assert torch.count_nonzero(down_out[:, 16:]) == 0


def test_fixup_bias1a_enters_only_the_downsampling_shortcut():
    """As in the reference: identity shortcuts see x, downsampling ones x + bias1a."""
    same, down = FixupBasicBlock(4, 4), FixupBasicBlock(4, 8, stride=2)
    x = torch.randn(1, 4, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for b in (same, down):
            b.conv2.weight.zero_()  # branch output is bias2b = 0
            b.bias1a.fill_(1.5)
        assert torch.equal(same(x), F.relu(x))
        out = down(x)
    assert torch.equal(out[:, :4], F.relu(x[:, :, ::2, ::2] + 1.5))
    assert torch.count_nonzero(out[:, 4:]) == 0


def test_fixup_forward_shapes(fixup):
    with torch.no_grad():
        assert fixup(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert fixup(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert build_model("fixup_resnet20", 100).fc.out_features == 100


def test_fixup_seeding_is_deterministic_and_leaves_global_rng():
    state = torch.get_rng_state()
    a = build_model("fixup_resnet20", 10, seed=5).state_dict()
    b = build_model("fixup_resnet20", 10, generator=torch.Generator().manual_seed(5)).state_dict()
    c = build_model("fixup_resnet20", 10, seed=6).state_dict()
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["layer1.0.conv1.weight"], c["layer1.0.conv1.weight"])
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_fixup_init_resets_a_trained_model():
    m = build_model("fixup_resnet20", 10, seed=1)
    ref = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.5)
    fixup_init_(m, seed=1)
    assert all(torch.equal(ref[k], v) for k, v in m.state_dict().items())


def test_fixup_errors():
    with pytest.raises(ValueError, match="seed or generator"):
        make_generator(1, torch.Generator())
    with pytest.raises(TypeError, match="FixupResNet"):
        fixup_init_(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="c_in"):
        FixupBasicBlock(32, 16, stride=2)


def test_fixup_case_layers(fixup):
    assert fixup_case_layers("a") == ["conv1"]
    d = fixup_case_layers("(d)")
    assert d == ["conv1", "layer1.2.conv2", "layer2.2.conv2", "layer3.2.conv2"]
    names = conv_layer_names(fixup)
    # "last conv of residual block 3, 6, 9" counted in forward order
    assert [names[2 * k] for k in (3, 6, 9)] == d[1:]
    shapes = [tuple(fixup.get_submodule(n).weight.shape) for n in d]
    assert shapes == [(16, 3, 3, 3), (16, 16, 3, 3), (32, 32, 3, 3), (64, 64, 3, 3)]
    assert fixup_case_layers("B") == d[:2] and fixup_case_layers("c") == d[:3]
    with pytest.raises(ValueError, match="case"):
        fixup_case_layers("e")


def test_param_groups(fixup):
    groups = param_groups(fixup, lr=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["scalars"]["lr"] == pytest.approx(0.01) and by_name["weights"]["lr"] == 0.1
    # as in the reference: every name with "bias" or "scale", which includes fc.bias
    assert len(by_name["scalars"]["params"]) == 9 * 5 + 2 + 1
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in fixup.parameters()) and len(set(ids)) == len(ids)
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.01), 0.1]
    assert param_groups(fixup, 0.1, scalar_lr_factor=1.0)[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="lr"):
        param_groups(fixup, 0.0)


def test_fixup_sgd_reduces_loss():
    """A few SGD steps on a small learnable batch (class = colour, plus noise; 16x16 to stay fast)."""
    model = build_model("fixup_resnet20", 10, seed=0)
    g = torch.Generator().manual_seed(0)
    colours = torch.randn(10, 3, 1, 1, generator=g)
    y = torch.arange(40) % 10
    x = colours[y] + 0.3 * torch.randn(40, 3, 16, 16, generator=g)
    opt = torch.optim.SGD(param_groups(model, lr=0.1), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(10), abs=1e-5)
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-5:]) < 0.6 * losses[0]


# ----------------------------------------------------------------------------- ResNet-18

def test_resnet18_parameter_count(r18):
    assert n_trainable(r18) == 11_181_642  # the paper's number = torchvision resnet18(10)


def test_resnet18_torchvision_layout(r18):
    sd = r18.state_dict()
    assert len(sd) == 122
    expected = {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer1.1.bn2.bias": (64,),
        "layer2.0.conv1.weight": (128, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer2.0.downsample.1.num_batches_tracked": (),
        "layer4.1.conv2.weight": (512, 512, 3, 3),
        "fc.weight": (10, 512),
        "fc.bias": (10,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert "layer1.0.downsample.0.weight" not in sd
    assert (r18.conv1.stride, r18.conv1.padding) == ((2, 2), (3, 3)) and r18.conv1.bias is None
    assert isinstance(r18.maxpool, nn.MaxPool2d)
    assert r18.layer3[0].conv1.stride == (2, 2) and r18.layer3[0].downsample[0].stride == (2, 2)


def test_resnet18_default_init(r18):
    w = r18.layer4[0].conv2.weight
    assert w.std().item() == pytest.approx(math.sqrt(2.0 / (512 * 9)), rel=0.02)  # fan-out He normal
    assert torch.all(r18.bn1.weight == 1) and torch.all(r18.layer1[0].bn2.bias == 0)
    assert r18.fc.weight.abs().max().item() <= 1 / math.sqrt(512)


def test_resnet18_conv_order_and_partial_layers(r18):
    x = torch.zeros(1, 3, 32, 32)
    assert forward_conv_order(r18, x) == conv_layer_names(r18)
    names = conv_layer_names(r18, include_shortcuts=False)
    assert len(names) == 17 and len(conv_layer_names(r18)) == 20
    assert resnet18_partial_layers(2) == names[:9]  # thesis: up to block 2 = 9 conv layers
    assert resnet18_partial_layers(1) == names[:5]
    assert resnet18_partial_layers(4) == names
    assert "layer2.0.downsample.0" in resnet18_partial_layers(2, include_shortcuts=True)
    with pytest.raises(ValueError, match="up_to_block"):
        resnet18_partial_layers(5)


def test_resnet18_forward_shapes(r18):
    with torch.no_grad():
        assert r18(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        assert r18(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_resnet18_thesis_layout_and_count(r18_thesis):
    m = r18_thesis
    assert n_trainable(m) == 11_269_312
    # the same convolutions as resnet18, no BN parameters, no fc bias
    conv = sum(mod.weight.numel() for mod in m.modules() if isinstance(mod, nn.Conv2d))
    assert conv + 512 * 200 == 11_269_312
    assert all(not bn.affine and bn.track_running_stats
               for bn in m.modules() if isinstance(bn, nn.BatchNorm2d))
    assert m.fc.bias is None and m.fc.out_features == 200
    assert all(c.bias is None for c in m.modules() if isinstance(c, nn.Conv2d))
    assert m.conv1.kernel_size == (7, 7) and isinstance(m.maxpool, nn.MaxPool2d)
    with torch.no_grad():
        assert m(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def test_resnet18_options():
    cifar = build_model("resnet18", 10, stem_kernel=3, stem_stride=1, stem_pool=False)
    assert n_trainable(cifar) == 11_181_642 - 64 * 3 * (49 - 9)
    assert isinstance(cifar.maxpool, nn.Identity)
    with torch.no_grad():
        assert cifar.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    affine = build_model("resnet18_thesis", 200, norm="bn")
    assert n_trainable(affine) == 11_269_312 + 9600  # 2 x 4800 BN channels
    with pytest.raises(ValueError, match="norm"):
        build_model("resnet18", 10, norm="layernorm")
    with pytest.raises(ValueError, match="stem_kernel"):
        build_model("resnet18", 10, stem_kernel=4)


def test_resnet18_seeding():
    state = torch.get_rng_state()
    a = build_model("resnet18_thesis", 200, seed=1)
    b = build_model("resnet18_thesis", 200, seed=1)
    c = build_model("resnet18_thesis", 200, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.layer3[1].conv1.weight, b.layer3[1].conv1.weight)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)
