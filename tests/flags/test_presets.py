"""The flagfiles in flags/presets: the CPU preset is the flag defaults, the paper's presets carry
the paper's numbers (Sec. 3.1, Appendix G) and pass the program's validation."""
import os

import pytest

import run
from flags import configs, validate

PRESETS = os.path.join(os.path.dirname(run.__file__), "flags", "presets")

# Paper Sec. 3.1 (ImageNet) and Appendix G (CIFAR-10), written out here by hand.
PAPER = {
    "imagenet_r50_pretrain.cfg": dict(
        train_mode="pretrain", resnet_depth=50, width_multiplier=1, num_proj_layers=3,
        train_batch_size=4096, train_epochs=800, learning_rate=0.1,
        learning_rate_scaling="sqrt", weight_decay=1e-4, temperature=0.1, memory_size=65536,
        global_bn=True, optimizer="lars"),
    "imagenet_r152_3x_sk_pretrain.cfg": dict(
        train_mode="pretrain", resnet_depth=152, width_multiplier=3, sk_ratio=0.0625,
        num_proj_layers=3, train_batch_size=4096, train_epochs=800, learning_rate=0.1,
        learning_rate_scaling="sqrt", weight_decay=1e-4, temperature=0.1, memory_size=65536),
    "imagenet_finetune_1pct.cfg": dict(
        train_mode="finetune", dataset="imagenet2012_subset/1pct", ft_proj_selector=1,
        train_batch_size=1024, train_epochs=60, learning_rate=0.005,
        learning_rate_scaling="sqrt", warmup_epochs=0, weight_decay=0),
    "imagenet_finetune_10pct.cfg": dict(
        train_mode="finetune", dataset="imagenet2012_subset/10pct", ft_proj_selector=1,
        train_batch_size=1024, train_epochs=30, learning_rate=0.005,
        learning_rate_scaling="sqrt", warmup_epochs=0, weight_decay=0),
    "imagenet_distill_self.cfg": dict(
        train_mode="distill", temperature=0.1, train_epochs=400, distill_alpha=1.0),
    "imagenet_distill_big_to_small.cfg": dict(
        train_mode="distill", temperature=1.0, train_epochs=400, distill_alpha=1.0),
    # Appendix G: SK at width 1x by default, batch 512, 800 epochs, temperature 0.2; footnote 5:
    # a 2-layer head and no EMA (memory) network; fine-tuning on 4,000 labels (400 per class).
    "cifar10_pretrain.cfg": dict(
        train_mode="pretrain", dataset="cifar10", resnet_depth=50, width_multiplier=1,
        sk_ratio=0.0625, num_proj_layers=2, memory_size=0, train_batch_size=512,
        train_epochs=800, temperature=0.2, color_jitter_strength=0.5, use_blur=False),
    "cifar10_finetune.cfg": dict(
        train_mode="finetune", dataset="cifar10", resnet_depth=50, sk_ratio=0.0625,
        num_proj_layers=2, ft_proj_selector=1, labels_per_class=400, learning_rate=0.005,
        learning_rate_scaling="sqrt", warmup_epochs=0, weight_decay=0),
}


@pytest.fixture
def parse():
    """Parses run.py's flags from a preset (None: no flags) and more; restores them after."""
    def parse(name, *more):
        run.FLAGS.unparse_flags()
        preset = [f"--flagfile={os.path.join(PRESETS, name)}"] if name else []
        run.FLAGS(["run.py", *preset, *more])
        return run.FLAGS
    yield parse
    run.FLAGS.unparse_flags()


def test_cpu_preset_is_the_flag_defaults(parse):
    """The preset and no flags at all give the same run (use_blur: default None = off at 32 px)."""
    with open(os.path.join(PRESETS, "cpu_fashion_mnist.cfg")) as f:
        names = [line[2:].split("=", 1)[0] for line in f if line.startswith("--")]
    assert "width_multiplier" in names and len(names) >= 8
    with_preset = configs.run_config(parse("cpu_fashion_mnist.cfg"), 60000)
    assert with_preset == configs.run_config(parse(None), 60000)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_presets_carry_the_papers_numbers_and_validate(name, parse, tmp_path):
    f = parse(name, f"--checkpoint={tmp_path}", f"--teacher={tmp_path}")
    assert {k: f[k].value for k in PAPER[name]} == PAPER[name]
    validate.validate(f)  # raises FlagError on a bad value or combination


def test_every_preset_is_checked():
    assert set(os.listdir(PRESETS)) - set(PAPER) == {"cpu_fashion_mnist.cfg"}


@pytest.mark.parametrize("name", ["imagenet_finetune_1pct.cfg", "imagenet_finetune_10pct.cfg"])
def test_imagenet_finetune_presets_use_all_of_the_official_subset(name, parse, tmp_path):
    f = parse(name, f"--checkpoint={tmp_path}")
    assert not f["label_fraction"].present
    data = configs.data_config(f)
    assert (data.label_fraction, data.labels_per_class, data.uses_label_subset) == (1.0, None,
                                                                                   False)


@pytest.mark.parametrize("name", sorted(os.listdir(PRESETS)))
def test_every_preset_states_the_number_it_targets(name):
    """As big_vision's configs do: a preset says which result it is meant to reproduce."""
    with open(os.path.join(PRESETS, name)) as f:
        header = [line for line in f if line.startswith("#")]
    expected = [i for i, line in enumerate(header) if line.startswith("# Expected")]
    assert len(expected) == 1
    assert "%" in "".join(header[expected[0]:])  # a top-1 accuracy, in its own words
