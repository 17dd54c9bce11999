"""VGG-19's layout as numbers, without TensorFlow: the sixteen 3x3
convolution layers in five blocks, their channels, the resolution each runs at,
and how far each one sees (the halo a tile needs so that its interior features
equal the whole image's).

Layer names: `convB_I` is the I-th convolution of block B before its ReLU,
`reluB_I` after it. Blocks 2-5 start with a 2x2 pooling of stride 2.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Pooling(str, enum.Enum):
    """The 2x2 pooling between blocks: the paper's average, or VGG-19's max."""

    AVG = "avg"
    MAX = "max"


BLOCK_SIZES = (2, 2, 4, 4, 4)
BLOCK_CHANNELS = (64, 128, 256, 512, 512)
INPUT_CHANNELS = 3
CONV_LAYERS = tuple(f"conv{b + 1}_{i + 1}" for b, n in enumerate(BLOCK_SIZES) for i in range(n))
RELU_LAYERS = tuple(name.replace("conv", "relu") for name in CONV_LAYERS)
LOSS_LAYERS = frozenset(CONV_LAYERS + RELU_LAYERS)
# Tiles and their halos are aligned to the coarsest pooling grid (2^4), so
# that every tile's poolings see the same 2x2 windows as the whole image's.
ALIGN = 1 << (len(BLOCK_SIZES) - 1)
MIN_SIDE = ALIGN  # the shorter side of any image: 16 -> 1 px after the four poolings


def split(name: str) -> tuple[str, int, int]:
    """ "relu4_2" -> ("relu", 4, 2)."""
    head, _, index = name.partition("_")
    kind = head.rstrip("0123456789")
    return kind, int(head[len(kind) :]), int(index)


def conv_index(name: str) -> int:
    """Position 0..15 of the convolution a layer belongs to."""
    _, block, index = split(name)
    return sum(BLOCK_SIZES[: block - 1]) + index - 1


def layer_index(name: str) -> int:
    """Order of a conv/relu layer in the forward pass (conv before its relu)."""
    return conv_index(name) * 2 + (split(name)[0] == "relu")


def block_of(name: str) -> int:
    return split(name)[1]


def stride(name: str) -> int:
    """Input pixels per feature position of the layer: 1, 2, 4, 8 or 16."""
    return 1 << (block_of(name) - 1)


def channels(name: str) -> int:
    return BLOCK_CHANNELS[block_of(name) - 1]


def conv_in_channels(index: int) -> int:
    """Input channels of convolution `index` (0..15)."""
    name = CONV_LAYERS[index]
    _, block, i = split(name)
    if i > 1:
        return BLOCK_CHANNELS[block - 1]
    return INPUT_CHANNELS if block == 1 else BLOCK_CHANNELS[block - 2]


def reach(name: str) -> int:
    """How many input pixels beyond its own block of `stride(name)` pixels a
    feature of `name` depends on, on either side. A tile whose halo is at least
    this many pixels computes the whole image's features at every position of
    its interior. (A 2x2 pooling of stride 2 covers exactly the pixels of its
    output position, so only the convolutions widen the reach; conv5_1's
    receptive field is 16 + 2 * 70 = 156 px.)"""
    return stage_reach(name, 1)


def stage_reach(name: str, first_block: int) -> int:
    """`reach` counted from the input of block `first_block` (the pooled map
    that block starts from), in positions of that map: what a tile of a
    network part that starts at `first_block` needs as its halo."""
    target = conv_index(name)
    if block_of(name) < first_block:
        raise ValueError(f"{name} comes before block {first_block}")
    radius, index = 0, 0
    for block, n in enumerate(BLOCK_SIZES, start=1):
        for _ in range(n):
            if block >= first_block:
                radius += 2 ** (block - first_block)  # one position of this block, in the first block's units
            if index == target:
                return radius
            index += 1
    raise ValueError(name)


def last_conv(block: int) -> str:
    """The last convolution of `block` (1..5), e.g. "conv3_4"."""
    return f"conv{block}_{BLOCK_SIZES[block - 1]}"


def halo(name: str) -> int:
    """`reach(name)` rounded up to the pooling grid."""
    return int(-(-reach(name) // ALIGN) * ALIGN)


def needed_layers(*groups: Iterable[str]) -> tuple[str, ...]:
    """The union of layer lists in network order: the canonical form, so that
    the order a request lists layers in never changes what is compiled."""
    return tuple(sorted({n for g in groups for n in g}, key=layer_index))


def deepest(layers: Iterable[str]) -> str:
    return max(layers, key=layer_index)


def conv_macs_per_pixel(upto: str, first_block: int = 1) -> float:
    """Multiply-adds of the forward pass from block `first_block` up to layer
    `upto`, per input pixel of the image."""
    total = 0.0
    for index in range(conv_index(upto) + 1):
        name = CONV_LAYERS[index]
        if block_of(name) < first_block:
            continue
        total += 9 * conv_in_channels(index) * channels(name) / stride(name) ** 2
    return total


def activation_values_per_pixel(upto: str, first_block: int = 1) -> float:
    """Values of every feature map from block `first_block` up to `upto`
    (conv and relu outputs, and the poolings inside that part), per input
    pixel of the image: what a backward pass through that part keeps."""
    total = 0.0
    for index in range(conv_index(upto) + 1):
        name = CONV_LAYERS[index]
        _, block, i = split(name)
        if block < first_block:
            continue
        total += 2 * channels(name) / stride(name) ** 2  # the convolution's output and its ReLU's
        if i == 1 and block > first_block:
            total += conv_in_channels(index) / stride(name) ** 2  # the pooling feeding this block
    return total


def pooled_values_per_pixel(block: int) -> float:
    """Values of the pooled map after `block` (the next block's input), per
    input pixel of the image."""
    return BLOCK_CHANNELS[block - 1] / float(4**block)
