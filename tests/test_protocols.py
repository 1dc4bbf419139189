"""The protocols and the chapter grids are data: check what they promise."""
import pytest

from patchinit import protocols as P
from patchinit.results import config_key


def test_method_b_init_names():
    base = P.method_b_cifar("paper", "cifar10", "conv4", 0.3).config(0)
    assert base["init"]["patch"]["options"]["scaling"] == "fan"
    random = P.method_b_init(base, "Random")
    assert random["init"] == {"baseline": "xavier_normal", "patch": None}
    assert config_key(random) == config_key(P.method_b_init(base, "Xavier normal"))  # one run, two names
    assert P.method_b_init(base, "Kaiming uniform")["init"]["baseline"] == "he_uniform"
    simple = P.method_b_init(base, "SimpleInit")["init"]["patch"]["options"]
    assert simple["simple"] is True and simple["P"] == 10_000
    assert P.method_b_init(base, "PatchesInit", D=3)["init"]["patch"]["options"]["D"] == 3
    assert base["init"]["patch"]["options"]["D"] is None  # the input config is not changed
    with pytest.raises(ValueError, match="random init"):
        P.method_b_init(base, "Random", P=5)
    with pytest.raises(ValueError, match="unknown method-B init"):
        P.method_b_init(base, "Kaiming")


def test_method_b_protocol_profiles():
    paper = P.method_b_cifar("paper", "cifar100", "conv6", 0.5)
    assert paper.seeds == (0, 1, 2) and paper.base["train"]["epochs"] == 100 and not paper.differences
    assert paper.base["train"]["lr"] == 0.1 and paper.base["train"]["batch_size"] == 128
    quick = P.method_b_cifar("quick", "cifar10")
    assert quick.base["train_subset"] < 50_000 and quick.base["test_subset"] and quick.differences
    assert "Profile: quick" in P.describe(quick)
    with pytest.raises(ValueError, match="cifar10 and cifar100"):
        P.method_b_cifar("paper", "tinyimagenet")
    with pytest.raises(ValueError, match="profile"):
        P.method_b_cifar("full")


def test_accuracy_grids_cover_the_thesis_tables():
    paper10 = P.method_b_accuracy_grid("paper", "cifar10")
    assert len(paper10) == 3 * 5 * 2  # Tables 8.1-8.3: one seed
    paper100 = P.method_b_accuracy_grid("paper", "cifar100")
    assert len(paper100) == 3 * 5 * 2 * 3  # Tables 8.4-8.9: three seeds
    quick10 = P.method_b_accuracy_grid("quick", "cifar10")
    assert {r["prune"] for r, _ in quick10} == set(P.METHOD_B_PRUNES)
    for row, cfg in paper100:
        assert cfg["model"] == row["model"] and cfg["supermask"]["prune"] == row["prune"]
        assert cfg["seed"] == row["seed"] and (cfg["init"]["patch"] is None) == (row["init"] == "Random")
    assert len({config_key(c) for _, c in paper100}) == len(paper100)


def test_ablation_grids_share_the_default_run():
    d = P.method_b_ablation_grid("paper", "D")
    assert [r["row"] for r, _ in d[:7]] == ["6C-0D", "5C-1D", "4C-2D", "3C-3D", "2C-4D", "1C-5D", "0C-6D"]
    assert [r["D"] for r, _ in d[:7]] == [7, 6, 5, 4, 3, 2, 1]
    pc = P.method_b_ablation_grid("paper", "PC")
    assert len(pc) == 6 * 3 and len(d) == 7 * 3
    acc = {config_key(c) for _, c in P.method_b_accuracy_grid("paper", "cifar100")}
    default_d = [c for r, c in d if r["row"] == "5C-1D"]
    default_pc = [c for r, c in pc if r["row"] == "50k / 500"]
    assert all(config_key(c) in acc for c in default_d + default_pc)  # 5C-1D = 50k/500 = the Table 8.8 run
    quick_pc = P.method_b_ablation_grid("quick", "PC")
    assert max(r["P"] for r, _ in quick_pc) <= P.QUICK_B_GRIDS["ablation"]["max_P"]
    with pytest.raises(ValueError, match="kind"):
        P.method_b_ablation_grid("quick", "E")


def test_init_and_reading_grids():
    g = P.method_b_init_grid("paper")
    assert {r["init"] for r, _ in g} == {"PatchesInit", "Xavier normal", "Xavier uniform", "Kaiming normal",
                                         "Kaiming uniform"}
    assert all(c["dataset"] == "cifar100" for _, c in g)
    readings = P.method_b_reading_grid("quick", models=("conv6",))
    scalings = [c["init"]["patch"]["options"]["scaling"] if c["init"]["patch"] else None for _, c in readings]
    assert scalings == [None, "fan", "neurons", "channels"]
    assert {r["model"] for r, _ in P.method_b_reading_grid("quick")} == {"conv2", "conv6"}


def test_mnist_grid_covers_both_chapters_once():
    from patchinit.protocols import MNIST_SWEEPS, method_a_mnist, method_a_mnist_grid
    from patchinit.results import config_key

    grid = method_a_mnist_grid("quick")
    keys = [config_key(c) for _, c in grid]
    assert len(keys) == len(set(keys))
    seeds = len(method_a_mnist("quick").seeds)
    # 4 inits + each sweep value for patch and Kaiming U, minus the defaults the inits already hold
    # (lr 0.01, momentum 0.9, weight decay 5e-4), + 2 deeper-layer mappings
    n_sweep = sum(len(v) for v in MNIST_SWEEPS.values())
    assert len(grid) == seeds * (4 + 2 * (n_sweep - 3) + 2)
    lrs = {c["train"]["lr"] for _, c in grid}
    assert lrs == set(MNIST_SWEEPS["train.lr"])


def test_paper_profiles_train_in_float32_and_bf16_is_a_labelled_variant_with_its_own_key():
    for proto in (P.method_a_cifar("paper"), P.method_b_cifar("paper"), P.method_b_tinyimagenet("paper"),
                  P.method_a_cifar("quick"), P.method_b_cifar("quick"), P.method_a_mnist("paper")):
        assert "precision" not in proto.base["train"]  # float32, as the papers trained; quick keys unchanged
        assert "bfloat16" not in P.describe(proto)
    cfg = P.method_b_cifar("paper").config(0)
    bf16 = P.with_precision(cfg, "bf16")
    assert bf16["train"]["precision"] == "bf16" and config_key(bf16) != config_key(cfg)
    assert config_key(P.with_precision(bf16, "fp32")) == config_key(cfg)
    assert "bfloat16 autocast" in P.describe(P.Protocol("x", "paper", bf16, (0,)))
    with pytest.raises(ValueError, match="precision must be one of"):
        P.with_precision(cfg, "fp16")
    assert "except: TinyImageNet's 20% train subset" in P.describe(P.method_b_tinyimagenet("paper"))
    assert "(1 seed)" in P.describe(P.method_b_tinyimagenet("paper"))


def test_the_quick_profile_is_the_paper_protocol_with_an_overlay_and_describe_reads_it():
    from dataclasses import replace

    from patchinit.protocols import Overlay, QUICK_B, describe, method_b_cifar

    paper, quick = method_b_cifar("paper"), method_b_cifar("quick")
    assert quick.base == QUICK_B.apply(paper.base)  # nothing else differs
    text = describe(quick)
    assert "5,000 of the 50,000 training images, so an epoch is 40 SGD steps instead of 391" in text
    assert "3 epochs instead of 100 (120 SGD steps instead of 39,100)" in text
    # the sentences are written from the overlay, so they follow it
    wider = replace(QUICK_B, train_subset=10_000, epochs=4)
    said = "; ".join(wider.differences(paper.base, paper.seeds, 50_000, 10_000))
    assert "10,000 of the 50,000" in said and "79 SGD steps instead of 391" in said and "4 epochs instead of 100" in said
    assert Overlay(train_subset=100, epochs=1, seeds=(0,), random_subset=False).apply(paper.base)["train_subset"] == 100


def test_the_scaling_curve_grid_shares_its_runs_with_b2_and_the_scaling_study():
    curve = P.method_b_scaling_curve_grid("paper")
    assert sorted((r["reading"] or "", r["seed"]) for r, _ in curve) == sorted(
        (r or "", s) for r in P.CURVE_READINGS for s in (0, 1))
    scaling = {config_key(c) for _, c in P.method_b_scaling_grid("paper")}
    b2 = {config_key(c) for _, c in P.method_b_early_grid("paper", "cifar10")}
    keys = {config_key(c) for _, c in curve}
    assert keys <= scaling and len(keys & b2) == 4   # Random and the a-priori reading, seeds 0 and 1
