"""Networks as ordered sequences of named blocks, one block per analysis layer.

Every builder returns a :class:`LayeredModel`. A block is what the analysis treats as one layer
(e.g. convolution + batch norm + ReLU, with the max pool that follows it); the last block is the
classifier's final linear layer and its output the logits. Rollback of "layer k" swaps the parameters
and buffers of block k, i.e. the state-dict entries ``blocks.<name>.*``.

Block names are readable: ``fc1``, ``conv3``, ``stem``, ``layer2_1`` (ResNet stage 2, residual block 1;
``nn.ModuleDict`` keys cannot contain dots), ``logits``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from mftma.errors import InputError

MODEL_NAMES = ("mlp", "cnn1d", "cnn2d", "vgg11", "vgg16", "resnet18")

#: VGG layouts: numbers are 3x3 convolution widths, "M" a 2x2 max pool (Simonyan & Zisserman, configs A and D).
VGG_LAYOUTS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class LayeredModel(nn.Module):
    """An ordered sequence of named blocks; ``forward`` runs them in order.

    Parameters
    ----------
    blocks : iterable of (str, nn.Module)
        The blocks in execution order. The output of the last one is the logits.

    Examples
    --------
    >>> model = build_model("mlp", (40,), 10, seed=0)
    >>> model.analysis_layers
    ['input', 'fc1', 'fc2', 'logits']
    >>> sorted(model.activations(torch.zeros(3, 40), ["fc1"]))
    ['fc1']
    """

    def __init__(self, blocks: Iterable[tuple[str, nn.Module]]):
        super().__init__()
        self.blocks = nn.ModuleDict(blocks)

    @property
    def analysis_layers(self) -> list[str]:
        """``["input", *block names]``: the layers whose activations the analysis reads."""
        return ["input", *self.blocks.keys()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return x

    def activations(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """Outputs of the requested layers for the batch ``x``.

        Runs the blocks only as far as the deepest requested layer. ``"input"`` returns ``x`` itself.

        Raises
        ------
        InputError
            If a layer name is not one of :attr:`analysis_layers`.
        """
        known = self.analysis_layers
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise InputError(f"unknown layer name(s) {unknown}; this model has layers {known}")
        wanted = set(layers)
        found = {"input": x} if "input" in wanted else {}
        last = max(known.index(name) for name in wanted) if wanted else 0
        for name, block in list(self.blocks.items())[:last]:
            x = block(x)
            if name in wanted:
                found[name] = x
        return found


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: float = 1.0,
    seed: int | None = None,
    **options,
) -> LayeredModel:
    """Build one of :data:`MODEL_NAMES` for inputs of ``input_shape`` (one example, no batch axis).

    Parameters
    ----------
    name : str
        ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``, ``"vgg11"``, ``"vgg16"`` or ``"resnet18"``.
    input_shape : sequence of int
        ``(L,)`` or ``(C, L)`` for ``cnn1d``; ``(H, W)`` or ``(C, H, W)`` for the 2-D networks; anything
        for ``mlp`` (it flattens).
    num_classes : int
        Size of the logits.
    width : float
        Multiplies every hidden width (channels, hidden units); parameter counts grow with it.
    seed : int, optional
        Seeds the initialisation without touching the global random state.
    **options
        Builder-specific: ``mlp``: ``hidden`` (list of sizes, default ``[256, 256]``);
        ``cnn1d``: ``channels`` (default ``[32, 32, 32]``; one conv block per entry), ``hidden`` (default
        ``256``), ``residual`` (default ``False``; True adds a shortcut around every conv block,
        :class:`ResidualConv`);
        ``cnn2d``: ``channels`` (default ``[32, 64, 128]``), ``hidden`` (default ``256``), ``residual``
        (default ``False``);
        ``vgg11``/``vgg16``: ``hidden`` (default ``512``), ``batch_norm`` (default ``True``);
        ``resnet18``: ``base_channels`` (default ``64``).

    Returns
    -------
    LayeredModel

    Raises
    ------
    InputError
        Unknown model name or option, non-positive width, or an input shape the network cannot take.
    """
    if name not in _BUILDERS:
        raise InputError(f"unknown model {name!r}; choose one of {list(MODEL_NAMES)}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise InputError(f"model width must be a positive number, got {width!r}")
    if int(num_classes) < 2:
        raise InputError(f"num_classes must be at least 2, got {num_classes}")
    builder, defaults = _BUILDERS[name]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise InputError(f"unknown option(s) {unknown} for model {name!r}; it takes {sorted(defaults)}")
    settings = {**defaults, **options}
    shape = tuple(int(size) for size in input_shape)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return LayeredModel(builder(shape, int(num_classes), float(width), **settings))


def _scaled(size: int, width: float) -> int:
    return max(1, round(size * width))


def _mlp(shape, num_classes, width, *, hidden):
    sizes = [math.prod(shape), *(_scaled(size, width) for size in hidden)]
    blocks = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        layers = [nn.Flatten()] if index == 1 else []
        blocks.append((f"fc{index}", nn.Sequential(*layers, nn.Linear(fan_in, fan_out), nn.ReLU())))
    first = [nn.Flatten()] if not hidden else []
    blocks.append(("logits", nn.Sequential(*first, nn.Linear(sizes[-1], num_classes))))
    return blocks


def _with_channels(shape, spatial_dims, model):
    """``(in_channels, spatial shape, reshape module or None)`` for inputs lacking a channel axis."""
    if len(shape) == spatial_dims:
        return 1, shape, nn.Unflatten(1, (1, shape[0]))
    if len(shape) == spatial_dims + 1:
        return shape[0], shape[1:], None
    raise InputError(
        f"model {model!r} needs inputs shaped {spatial_dims} or {spatial_dims + 1} axes "
        f"(optionally channels first), got input shape {shape}"
    )


def _conv_block(conv, norm, pool, reshape, residual=False):
    """``[reshape] -> conv -> norm -> ReLU -> [pool]``; with ``residual``, ``ReLU(norm(conv(x)) + shortcut(x))``."""
    layers = [reshape] if reshape is not None else []
    layers += [ResidualConv(conv, norm)] if residual else [conv, norm, nn.ReLU()]
    if pool is not None:
        layers.append(pool)
    return nn.Sequential(*layers)


class ResidualConv(nn.Module):
    """``ReLU(norm(conv(x)) + shortcut(x))``: one convolution with an identity shortcut, or a 1x1
    convolution with batch norm where the channel count changes (``conv`` keeps the spatial size)."""

    def __init__(self, conv: nn.Module, norm: nn.Module):
        super().__init__()
        self.conv, self.norm = conv, norm
        self.shortcut = nn.Identity()
        if conv.in_channels != conv.out_channels:
            projection = type(conv)(conv.in_channels, conv.out_channels, kernel_size=1, bias=False)
            self.shortcut = nn.Sequential(projection, type(norm)(conv.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)) + self.shortcut(x))


def _classifier_head(blocks, features, hidden, num_classes):
    """Append ``fc1`` (flatten + linear + ReLU) and ``logits`` to ``blocks``."""
    blocks.append(("fc1", nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU())))
    blocks.append(("logits", nn.Linear(hidden, num_classes)))
    return blocks


def _cnn1d(shape, num_classes, width, *, channels, hidden, residual):
    in_channels, (length,), reshape = _with_channels(shape, 1, "cnn1d")
    blocks = []
    for index, out in enumerate((_scaled(c, width) for c in channels), start=1):
        pool = nn.MaxPool1d(2) if length >= 4 else None
        conv = nn.Conv1d(in_channels, out, kernel_size=5, padding=2)
        blocks.append((f"conv{index}", _conv_block(conv, nn.BatchNorm1d(out), pool, reshape, residual)))
        in_channels, reshape = out, None
        length = length // 2 if pool is not None else length
    return _classifier_head(blocks, in_channels * length, _scaled(hidden, width), num_classes)


def _cnn2d(shape, num_classes, width, *, channels, hidden, residual):
    in_channels, (height, breadth), reshape = _with_channels(shape, 2, "cnn2d")
    blocks = []
    for index, out in enumerate((_scaled(c, width) for c in channels), start=1):
        pool = nn.MaxPool2d(2) if min(height, breadth) >= 4 else None
        conv = nn.Conv2d(in_channels, out, kernel_size=3, padding=1)
        blocks.append((f"conv{index}", _conv_block(conv, nn.BatchNorm2d(out), pool, reshape, residual)))
        in_channels, reshape = out, None
        if pool is not None:
            height, breadth = height // 2, breadth // 2
    return _classifier_head(blocks, in_channels * height * breadth, _scaled(hidden, width), num_classes)


def _vgg(layout):
    def build(shape, num_classes, width, *, hidden, batch_norm):
        in_channels, (height, breadth), reshape = _with_channels(shape, 2, "vgg")
        blocks = []
        for index, position in enumerate((i for i, item in enumerate(layout) if item != "M"), start=1):
            out = _scaled(layout[position], width)
            pooled = position + 1 < len(layout) and layout[position + 1] == "M"
            # Small inputs: a pool that would shrink the map below 1x1 is dropped.
            pool = nn.MaxPool2d(2) if pooled and min(height, breadth) >= 2 else None
            conv = nn.Conv2d(in_channels, out, kernel_size=3, padding=1, bias=not batch_norm)
            norm = nn.BatchNorm2d(out) if batch_norm else nn.Identity()
            blocks.append((f"conv{index}", _conv_block(conv, norm, pool, reshape)))
            in_channels, reshape = out, None
            if pool is not None:
                height, breadth = height // 2, breadth // 2
        fc_width = _scaled(hidden, width)
        _classifier_head(blocks, in_channels * height * breadth, fc_width, num_classes)
        blocks.insert(-1, ("fc2", nn.Sequential(nn.Linear(fc_width, fc_width), nn.ReLU())))
        return blocks

    return build


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _resnet18(shape, num_classes, width, *, base_channels):
    in_channels, _, reshape = _with_channels(shape, 2, "resnet18")
    stem_channels = _scaled(base_channels, width)
    # Small-input stem (3x3 convolution, no max pool), as usual for 32x32 images.
    stem = nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False)
    blocks = [("stem", _conv_block(stem, nn.BatchNorm2d(stem_channels), None, reshape))]
    channels = stem_channels
    for stage in range(1, 5):
        out = _scaled(base_channels * 2 ** (stage - 1), width)
        for index in range(2):
            stride = 2 if stage > 1 and index == 0 else 1
            blocks.append((f"layer{stage}_{index}", ResidualBlock(channels, out, stride)))
            channels = out
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
    blocks.append(("logits", head))
    return blocks


_BUILDERS = {
    "mlp": (_mlp, {"hidden": [256, 256]}),
    "cnn1d": (_cnn1d, {"channels": [32, 32, 32], "hidden": 256, "residual": False}),
    "cnn2d": (_cnn2d, {"channels": [32, 64, 128], "hidden": 256, "residual": False}),
    "vgg11": (_vgg(VGG_LAYOUTS["vgg11"]), {"hidden": 512, "batch_norm": True}),
    "vgg16": (_vgg(VGG_LAYOUTS["vgg16"]), {"hidden": 512, "batch_norm": True}),
    "resnet18": (_resnet18, {"base_channels": 64}),
}
