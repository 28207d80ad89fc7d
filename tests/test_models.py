"""LayeredModel and the model builders."""
import pytest
import torch

from mftma.errors import InputError
from mftma.experiments.models import MODEL_NAMES, LayeredModel, build_model

SHAPES = {
    "mlp": (40,),
    "cnn1d": (40,),
    "cnn2d": (8, 8),
    "vgg11": (3, 16, 16),
    "vgg16": (3, 8, 8),
    "resnet18": (3, 8, 8),
}


def _parameters(model):
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_gives_logits_and_all_layer_activations(name):
    model = build_model(name, SHAPES[name], 7, width=0.25, seed=0).eval()
    x = torch.randn(3, *SHAPES[name])
    activations = model.activations(x, model.analysis_layers)
    assert list(activations) == model.analysis_layers
    assert model.analysis_layers[0] == "input" and model.analysis_layers[-1] == "logits"
    assert torch.equal(activations["input"], x)
    assert torch.allclose(activations["logits"], model(x))
    assert model(x).shape == (3, 7)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_count_grows_with_width(name):
    small, large = (build_model(name, SHAPES[name], 10, width=w) for w in (0.125, 0.25))
    assert _parameters(large) > 2 * _parameters(small)


def test_block_names_are_readable():
    assert build_model("vgg11", (3, 32, 32), 10, width=0.125).analysis_layers == [
        "input", *(f"conv{i}" for i in range(1, 9)), "fc1", "fc2", "logits"]
    assert len(build_model("vgg16", (3, 32, 32), 10, width=0.125).analysis_layers) == 1 + 13 + 3
    resnet = build_model("resnet18", (3, 32, 32), 10, width=0.125).analysis_layers
    assert resnet[:3] == ["input", "stem", "layer1_0"] and resnet[-2:] == ["layer4_1", "logits"]
    assert build_model("mlp", (40,), 10, hidden=[8, 8, 8]).analysis_layers == ["input", "fc1", "fc2", "fc3", "logits"]


def test_vgg_adapts_to_inputs_smaller_than_its_pools():
    model = build_model("vgg16", (1, 8, 8), 10, width=0.125)
    features = model.activations(torch.randn(2, 1, 8, 8), ["conv13"])["conv13"]
    assert features.shape[-2:] == (1, 1)


def test_activations_run_only_as_far_as_needed():
    model = build_model("mlp", (40,), 10, hidden=[16, 16], seed=0)
    calls = []
    model.blocks["logits"].register_forward_hook(lambda *args: calls.append("logits"))
    model.activations(torch.randn(2, 40), ["fc1", "input"])
    assert calls == []
    assert model.activations(torch.randn(2, 40), []) == {}


def test_unknown_layer_is_named_in_the_error():
    model = build_model("mlp", (40,), 10)
    with pytest.raises(InputError, match="conv9"):
        model.activations(torch.randn(2, 40), ["conv9"])


def test_seed_makes_initialisation_reproducible_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = build_model("cnn1d", (40,), 10, seed=5).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    second = build_model("cnn1d", (40,), 10, seed=5).state_dict()
    other = build_model("cnn1d", (40,), 10, seed=6).state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    assert not torch.equal(first["blocks.conv1.1.weight"], other["blocks.conv1.1.weight"])


@pytest.mark.parametrize(
    ("name", "shape", "kwargs", "message"),
    [
        ("alexnet", (40,), {}, "unknown model 'alexnet'"),
        ("mlp", (40,), {"width": 0}, "positive"),
        ("mlp", (40,), {"depth": 3}, r"unknown option\(s\) \['depth'\]"),
        ("cnn2d", (40,), {}, "input shape"),
    ],
)
def test_bad_arguments_raise_input_error(name, shape, kwargs, message):
    with pytest.raises(InputError, match=message):
        build_model(name, shape, 10, **kwargs)


def test_layered_model_runs_blocks_in_order():
    model = LayeredModel([("shift", torch.nn.ConstantPad1d((0, 1), 1.0)), ("logits", torch.nn.Flatten())])
    assert model.analysis_layers == ["input", "shift", "logits"]
    assert model(torch.zeros(1, 2)).tolist() == [[0.0, 0.0, 1.0]]


@pytest.mark.parametrize("name, shape", [("cnn1d", (40,)), ("cnn2d", (3, 8, 8))])
def test_residual_shortcut_adds_the_block_input(name, shape):
    plain = build_model(name, shape, 5, channels=[4, 4, 6], hidden=8, seed=0)
    residual = build_model(name, shape, 5, channels=[4, 4, 6], hidden=8, residual=True, seed=0)
    assert plain.analysis_layers == residual.analysis_layers
    block = residual.blocks["conv2"][0]
    x = torch.randn(2, 4, *shape[1:] if name == "cnn2d" else (20,))
    block.eval()
    # Same channels: identity shortcut, so the block is ReLU(norm(conv(x)) + x).
    assert torch.allclose(block(x), torch.relu(block.norm(block.conv(x)) + x))
    # Channel change (4 -> 6): a 1x1 projection shortcut, with parameters of its own.
    assert _parameters(residual.blocks["conv3"]) > _parameters(plain.blocks["conv3"])
    assert residual(torch.randn(2, *shape)).shape == (2, 5)
