"""Loading VGG-19 weights: a file in Keras' application layout written here,
missing and truncated files, the offline ImageNet download, and seeded random
weights. Every failure is one WeightsError that says what was tried and how to
fix it; nothing falls back to random."""

from __future__ import annotations

import logging
import pathlib

import h5py
import numpy as np
import pytest

from stylize_server.engine.vgg import KERAS_NAMES, VGG19Features, load_keras_vgg19
from stylize_server.job.errors import WeightsError
from stylize_server.job.layout import CONV_LAYERS

CHANNELS = (3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)


def write_keras_vgg19_h5(path: pathlib.Path, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write a notop weights file in the legacy Keras HDF5 layout.

    Each kernel varies only along its output axis, so gzip shrinks the file to a
    few hundred KB while every layer still gets distinct values to check.
    """
    rng = np.random.default_rng(seed)
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [n.encode() for n in ("input_1", *KERAS_NAMES[:2], "block1_pool", *KERAS_NAMES[2:])]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        f.create_group("input_1").attrs["weight_names"] = []
        f.create_group("block1_pool").attrs["weight_names"] = []
        for i, name in enumerate(KERAS_NAMES):
            cin, cout = CHANNELS[i], CHANNELS[i + 1]
            kernel = np.broadcast_to(rng.normal(0, 0.05, cout).astype(np.float32), (3, 3, cin, cout)).copy()
            bias = rng.normal(0, 0.1, cout).astype(np.float32)
            g = f.create_group(name)
            names = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
            g.attrs["weight_names"] = names
            g.create_dataset(names[0].decode(), data=kernel, compression="gzip")
            g.create_dataset(names[1].decode(), data=bias, compression="gzip")
            values[CONV_LAYERS[i]] = (kernel, bias)
    return values


def test_a_keras_layout_file_loads_into_the_convolution_layers(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
    written = write_keras_vgg19_h5(path, seed=3)
    assert path.stat().st_size < 5_000_000
    vgg = VGG19Features(str(path))
    assert vgg.weights.random is False and vgg.weights.path == str(path)
    for name, (kernel, bias) in written.items():
        got_kernel, got_bias = vgg.conv_weights(name)
        np.testing.assert_array_equal(got_kernel, kernel, err_msg=name)
        np.testing.assert_array_equal(got_bias, bias, err_msg=name)


def test_a_missing_file_gives_one_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(WeightsError) as err:
        load_keras_vgg19(str(tmp_path / "nope.h5"))
    message = str(err.value)
    assert "no such file" in message and "KERAS_HOME" in message and "random:0" in message


def test_a_truncated_file_gives_one_clear_error(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "vgg19.h5"
    write_keras_vgg19_h5(path, seed=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError) as err:
        load_keras_vgg19(str(path))
    message = str(err.value)
    assert "truncated" in message and "80134624" in message and "weights source" in message


def test_the_engine_s_errors_name_no_command_line_flag(tmp_path: pathlib.Path) -> None:
    # A Python caller passes Engine(weights=...): "--weights" is the server's
    # advice, added where it logs the error (app.py).
    for source in (str(tmp_path / "nope.h5"), "random:abc"):
        with pytest.raises(WeightsError) as err:
            load_keras_vgg19(source)
        assert "--weights" not in str(err.value) and f"weights source {source!r}" in str(err.value)


def test_a_file_of_another_kind_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(WeightsError, match=r"ending in \.h5"):
        load_keras_vgg19(str(path))


def test_imagenet_offline_says_what_was_tried_and_never_falls_back(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An empty Keras cache and no route to the download: this machine's reality.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(WeightsError) as err:
        load_keras_vgg19("imagenet", download_timeout=10)
    message = str(err.value)
    assert "no cached file at" in message and str(tmp_path / "keras") in message
    assert "253f8cb515780f3b799900260a226db6" in message and "random:0" in message


def test_random_weights_are_seeded_and_announced(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        a = VGG19Features("random:5")
    assert any("RANDOM weights" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    b = VGG19Features("random:5")
    c = VGG19Features("random:6")
    assert a.weights.random
    np.testing.assert_array_equal(a.conv_weights("conv3_1")[0], b.conv_weights("conv3_1")[0])
    assert not np.array_equal(a.conv_weights("conv3_1")[0], c.conv_weights("conv3_1")[0])
    with pytest.raises(WeightsError, match="seed"):
        load_keras_vgg19("random:abc")
