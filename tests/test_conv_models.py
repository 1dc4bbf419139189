"""Conv2/4/6 follow thesis Table 5.1 and the lottery-ticket / edge-popup weight counts."""
import pytest
import torch
import torch.nn as nn

from patchinit.models import build_model

# lottery-ticket paper (Frankle & Carbin 2019, Fig. 2): 4.3M, 2.4M, 2.26M weights;
# exact counts of the edge-popup reference's bias-free definitions with 10 classes.
EXPECTED = {"conv2": 4_300_992, "conv4": 2_425_024, "conv6": 2_261_184}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parameter_count_matches_reference(name):
    model = build_model(name, 10)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED[name]


def test_parameter_count_depends_on_classes_only_in_fc3():
    diff = (sum(p.numel() for p in build_model("conv6", 100).parameters())
            - sum(p.numel() for p in build_model("conv6", 10).parameters()))
    assert diff == 256 * 90


@pytest.mark.parametrize("name,widths", [("conv2", [64, 64]), ("conv4", [64, 64, 128, 128]),
                                         ("conv6", [64, 64, 128, 128, 256, 256])])
def test_layers_named_and_ordered(name, widths):
    model = build_model(name, 10)
    assert model.conv_names == [f"conv{i}" for i in range(1, len(widths) + 1)]
    for conv_name, width in zip(model.conv_names, widths):
        conv = model.get_submodule(conv_name)
        assert isinstance(conv, nn.Conv2d)
        assert conv.out_channels == width and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
        assert conv.bias is None
    fcs = [model.get_submodule(n) for n in ("fc1", "fc2", "fc3")]
    assert [fc.out_features for fc in fcs] == [256, 256, 10]
    assert all(fc.bias is None for fc in fcs)
    # forward order of the weight layers is the registration order
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert names == model.conv_names + ["fc1", "fc2", "fc3"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_forward_shape(name):
    model = build_model(name, 7)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_relu_between_fc_layers():
    """fc3's input is non-negative (ReLU after fc2), its output need not be."""
    model = build_model("conv2", 10)
    seen = {}
    model.fc3.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0]))
    out = model(torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert (seen["x"] >= 0).all() and (out < 0).any()


def test_bad_widths_rejected():
    from patchinit.models.conv import ConvNet

    with pytest.raises(ValueError, match="even number"):
        ConvNet((64, 64, 128), 10)
    with pytest.raises(ValueError, match="too small"):
        ConvNet((8,) * 12, 10, input_size=32)


def test_forward_from_runs_the_segment_between_convs():
    from patchinit.init import baseline_init_

    model = baseline_init_(build_model("conv6", 10), "xavier_normal", seed=0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    seen = {}
    for name in model.conv_names:
        model.get_submodule(name).register_forward_pre_hook(lambda m, inp, n=name: seen.setdefault(n, inp[0]))
    logits = model(x)
    torch.testing.assert_close(model.forward_from(x), logits)
    torch.testing.assert_close(model.forward_from(seen["conv3"], "conv3"), logits)
    torch.testing.assert_close(model.forward_from(seen["conv2"], "conv2", "conv5"), seen["conv5"])
    torch.testing.assert_close(model.forward_from(x, stop="conv1"), x)
    with pytest.raises(ValueError, match="before"):
        model.forward_from(x, "conv4", "conv2")
    with pytest.raises(ValueError, match="not a conv"):
        model.forward_from(x, "fc1")
