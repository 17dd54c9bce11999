"""VGG-19's sixteen convolution layers as a feature extractor: the weights
(ImageNet through Keras' own download and hash check, a local file of that
layout, or seeded random for tests), the caffe preprocessing, and a forward pass
with average or max pooling that stops at the deepest layer a job needs.

Keras' VGG19 fuses ReLU into its Conv2D layers and uses max pooling; the paper
uses average pooling and the losses may read pre-ReLU maps, so the forward pass
is rebuilt here around the same layers' kernel and bias variables.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from stylize_server.job.errors import WeightsError
from stylize_server.job.layout import BLOCK_SIZES, CONV_LAYERS, Pooling, block_of, last_conv, layer_index

log = logging.getLogger(__name__)

# The Keras "caffe" convention: BGR, minus the ImageNet mean pixel, 0..255.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN_RGB = IMAGENET_MEAN_BGR[::-1]
WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
WEIGHTS_MD5 = "253f8cb515780f3b799900260a226db6"
WEIGHTS_BYTES = 80_134_624
# Keras' layer names for our conv1_1..conv5_4, in order.
KERAS_NAMES = tuple(f"block{b + 1}_conv{i + 1}" for b, n in enumerate(BLOCK_SIZES) for i in range(n))


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    source: str  # "imagenet", a path, or "random:SEED"
    random: bool
    path: str | None  # the file that was read, if any
    load_seconds: float


def preprocess(rgb: tf.Tensor) -> tf.Tensor:
    """RGB 0..255 -> BGR minus the ImageNet mean (Keras "caffe" mode)."""
    return tf.reverse(rgb, axis=[-1]) - tf.constant(IMAGENET_MEAN_BGR, dtype=rgb.dtype)


def keras_home() -> str:
    return os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))


def _how_to_fix() -> str:
    # Says "weights source", never a flag: a Python caller passes it as
    # `weights=`; the server adds its --weights advice where it logs this (app.py).
    return (
        "To fix: (1) download "
        f"{WEIGHTS_FILE} ({WEIGHTS_BYTES} bytes, MD5 {WEIGHTS_MD5}) on a machine with internet access "
        f"and give its path as the weights source (/path/{WEIGHTS_FILE}); or (2) put it into "
        f"{os.path.join(keras_home(), 'models')} (set KERAS_HOME to use another cache folder) and use "
        "the source 'imagenet'; or (3) for an offline smoke test only, use the source 'random:0' "
        "(the network then has random weights and the results are not artistic)."
    )


def _random_init(model: tf.keras.Model, seed: int) -> None:
    """He-normal kernels, zero biases: keeps activations O(1) through ReLUs."""
    rng = np.random.default_rng(seed)
    for name in KERAS_NAMES:
        layer = model.get_layer(name)
        kh, kw, cin, cout = layer.kernel.shape
        std = np.sqrt(2.0 / (kh * kw * cin))
        layer.kernel.assign(rng.normal(0.0, std, size=(kh, kw, cin, cout)).astype(np.float32))
        layer.bias.assign(np.zeros((cout,), np.float32))


def _keras_vgg19(weights: str | None) -> tf.keras.Model:
    return tf.keras.applications.VGG19(include_top=False, weights=weights, input_shape=(None, None, 3))


def load_keras_vgg19(source: str, download_timeout: float = 120.0) -> tuple[tf.keras.Model, WeightsInfo]:
    """Build Keras' VGG19 (no top) with the requested weights.

    Raises WeightsError, saying what was tried and how to fix it, for a missing,
    truncated, corrupt or unreachable source. Never falls back to random.
    """
    start = time.perf_counter()
    if source.startswith("random:"):
        try:
            seed = int(source.split(":", 1)[1])
        except ValueError:
            raise WeightsError(f"weights source {source!r}: the seed after 'random:' must be an integer") from None
        model = _keras_vgg19(None)
        _random_init(model, seed)
        log.warning(
            "VGG-19 runs with RANDOM weights (%s): results are NOT artistic. "
            "Use the weights source imagenet or a path to %s for real style transfer.",
            source,
            WEIGHTS_FILE,
        )
        return model, WeightsInfo(source, True, None, time.perf_counter() - start)

    if source == "imagenet":
        cached = os.path.join(keras_home(), "models", WEIGHTS_FILE)
        previous_timeout = socket.getdefaulttimeout()
        # Keras' download has no timeout of its own; a silent network must not hang start-up.
        socket.setdefaulttimeout(download_timeout)
        try:
            model = _keras_vgg19("imagenet")
        except Exception as exc:
            state = (
                f"a cached file exists at {cached} but could not be used (wrong hash or truncated, "
                f"{os.path.getsize(cached)} bytes)"
                if os.path.exists(cached)
                else f"no cached file at {cached}"
            )
            raise WeightsError(
                "Could not load the ImageNet VGG-19 weights: Keras tried its cache and then the download "
                f"({state}) and failed with {type(exc).__name__}: {exc}. " + _how_to_fix()
            ) from exc
        finally:
            socket.setdefaulttimeout(previous_timeout)
        return model, WeightsInfo(source, False, cached, time.perf_counter() - start)

    path = os.path.abspath(os.path.expanduser(source))
    if not os.path.isfile(path):
        raise WeightsError(f"weights source {source!r}: no such file ({path}). " + _how_to_fix())
    if not path.endswith((".h5", ".hdf5")):
        raise WeightsError(
            f"weights source {source!r}: expected a Keras HDF5 weights file ending in .h5 ({WEIGHTS_FILE}). "
            + _how_to_fix()
        )
    try:
        model = _keras_vgg19(path)
    except Exception as exc:
        size = os.path.getsize(path)
        raise WeightsError(
            f"weights source {source!r}: the file ({size} bytes; the real one is {WEIGHTS_BYTES}) could not be read "
            f"as VGG-19 weights in the Keras application layout ({type(exc).__name__}: {exc}). It may be "
            "truncated or of another layout. " + _how_to_fix()
        ) from exc
    return model, WeightsInfo(source, False, path, time.perf_counter() - start)


class VGG19Features:
    """The feature extractor shared by every job on the device.

    Convolutions run in float32 or bfloat16 (`dtype`); the float32 kernels
    are the Keras layers' own variables (no copy), the bfloat16 ones are cast
    once, on first use. Every returned feature map is float32, so that Gram
    matrices and losses are never taken in the lower precision.
    """

    def __init__(self, weights: str = "imagenet", download_timeout: float = 120.0) -> None:
        self.keras_model, self.weights = load_keras_vgg19(weights, download_timeout)
        convs: list[tuple[tf.Tensor, tf.Tensor]] = []
        for name in KERAS_NAMES:
            layer = self.keras_model.get_layer(name)
            # The Keras layers' own variables: no copy of the weights is made.
            convs.append((layer.kernel.value, layer.bias.value))
        self._kernels: dict[tf.DType, list[tuple[tf.Tensor, tf.Tensor]]] = {tf.float32: convs}
        self._lock = threading.Lock()

    def conv_weights(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(kernel, bias) of conv layer `name` (e.g. "conv3_1") as numpy arrays."""
        kernel, bias = self._kernels[tf.float32][CONV_LAYERS.index(name)]
        return kernel.numpy(), bias.numpy()

    def kernels(self, dtype: tf.DType) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """The sixteen (kernel, bias) pairs in `dtype`, cast once per precision."""
        with self._lock:
            if dtype not in self._kernels:
                with tf.init_scope():  # eagerly, even when first asked for inside a trace
                    cast = [(tf.cast(k, dtype), tf.cast(b, dtype)) for k, b in self._kernels[tf.float32]]
                self._kernels[dtype] = cast
            return self._kernels[dtype]

    def __call__(
        self, rgb: tf.Tensor, layers: Iterable[str], pooling: Pooling, dtype: tf.DType = tf.float32
    ) -> dict[str, tf.Tensor]:
        """Feature maps of `layers` for an RGB 0..255 batch; stops at the deepest."""
        features, _ = self.stage(rgb, 1, len(BLOCK_SIZES), layers, pooling, dtype, emit_next=False)
        return features

    def stage(
        self,
        h: tf.Tensor,
        first_block: int,
        last_block: int,
        layers: Iterable[str],
        pooling: Pooling,
        dtype: tf.DType,
        emit_next: bool,
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor | None]:
        """Run blocks `first_block`..`last_block` from `h`: RGB 0..255 (float32)
        when `first_block` is 1, else block `first_block`'s pooled input in
        `dtype`. Returns the float32 feature maps of `layers` (those in these
        blocks) and, with `emit_next`, the pooled input of the block after
        `last_block` (in `dtype`); without it, stops at the deepest of `layers`."""
        wanted = {n for n in layers if first_block <= block_of(n) <= last_block}
        if emit_next:
            deepest = layer_index(last_conv(last_block)) + 1  # its relu
        elif wanted:
            deepest = max(layer_index(n) for n in wanted)
        else:
            return {}, None
        convs = self.kernels(dtype)
        pool = tf.nn.avg_pool2d if pooling is Pooling.AVG else tf.nn.max_pool2d
        out: dict[str, tf.Tensor] = {}
        if first_block == 1:
            h = tf.cast(preprocess(tf.cast(h, tf.float32)), dtype)
        else:
            h = tf.cast(h, dtype)
        for block in range(first_block, last_block + 1):
            if block > first_block:
                h = pool(h, ksize=2, strides=2, padding="VALID")
            for i in range(1, BLOCK_SIZES[block - 1] + 1):
                name = f"conv{block}_{i}"
                kernel, bias = convs[CONV_LAYERS.index(name)]
                h = tf.nn.bias_add(tf.nn.conv2d(h, kernel, strides=1, padding="SAME"), bias)
                if name in wanted:
                    out[name] = tf.cast(h, tf.float32)
                if layer_index(name) == deepest:
                    return out, None
                h = tf.nn.relu(h)
                if f"relu{block}_{i}" in wanted:
                    out[f"relu{block}_{i}"] = tf.cast(h, tf.float32)
                if layer_index(name) + 1 == deepest and not emit_next:
                    return out, None
        return out, pool(h, ksize=2, strides=2, padding="VALID")
