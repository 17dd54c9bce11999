"""The header parser (stylize_server.job.headers, behind images.probe): the
dimensions, orientation and alpha of every format and mode Pillow writes,
read from the bytes without inflating or decoding anything; hostile headers
(cut short, huge lengths, endless segments, text bombs, lying frame headers)
refused as DECODE_FAILED naming the field; and decode agreeing with the
header (issue 17, item 2)."""

from __future__ import annotations

import io
import struct
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin

from stylize_api.schema import ErrorReason
from stylize_server.job import headers, images
from stylize_server.job.errors import DecodeFailed, InvalidArgument, StylizeError
from tests.support.hostile_images import png_chunk, text_bomb_png, with_chunks_before_idat
from tests.support.images import image_array

W, H = 53, 37
BIG = 10**9


def _save(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)  # type: ignore[arg-type]
    return buf.getvalue()


def _mode(mode: str) -> Image.Image:
    rng = np.random.default_rng(3)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65535, (H, W)).astype(np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(-5, 70000, (H, W)).astype(np.int32))
    if mode == "F":
        return Image.fromarray(rng.uniform(-5, 300, (H, W)).astype(np.float32))
    rgba = Image.fromarray(image_array(W, H)).convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)))
    return rgba.convert(mode)


# (id, mode, format, save arguments): every mode each format's Pillow writer takes.
CASES = [
    *[(f"png-{m}", m, "PNG", {}) for m in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")],
    ("png-P-tRNS", "P", "PNG", {"transparency": 3}),
    ("png-L-tRNS", "L", "PNG", {"transparency": 7}),
    ("png-RGB-tRNS", "RGB", "PNG", {"transparency": (1, 2, 3)}),
    *[(f"jpeg-{m}", m, "JPEG", {}) for m in ("L", "RGB", "CMYK")],
    ("jpeg-progressive", "RGB", "JPEG", {"progressive": True}),
    *[(f"webp-{m}", m, "WEBP", {}) for m in ("RGB", "RGBA")],
    *[(f"webp-lossless-{m}", m, "WEBP", {"lossless": True}) for m in ("RGB", "RGBA")],
    *[(f"gif-{m}", m, "GIF", {}) for m in ("1", "L", "P", "RGB")],
    ("gif-P-transparency", "P", "GIF", {"transparency": 3}),
    ("gif-L-transparency", "L", "GIF", {"transparency": 3}),
    *[(f"bmp-{m}", m, "BMP", {}) for m in ("1", "L", "P", "RGB", "RGBA")],
    *[(f"tiff-{m}", m, "TIFF", {}) for m in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")],
    *[(f"tiff-{m}", m, "TIFF", {}) for m in ("I;16", "I", "F")],
    ("tiff-lzw", "RGB", "TIFF", {"compression": "tiff_lzw"}),
    ("tiff-big", "RGB", "TIFF", {"big_tiff": True}),
]


def _pillow_header(data: bytes) -> tuple[int, int, bool]:
    """What Pillow's open says: (width, height) after EXIF orientation, and
    whether the mode carries alpha, as the decode treats it."""
    with Image.open(io.BytesIO(data)) as image:
        w, h = image.size
        # Pillow's TIFF plugin already reports the oriented size.
        if image.format != "TIFF" and image.getexif().get(0x0112, 1) in headers.TRANSPOSING:
            w, h = h, w
        mode = image.mode
        alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
        return w, h, alpha


@pytest.mark.parametrize(("mode", "fmt", "kwargs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_header_reads_what_pillow_opens(mode: str, fmt: str, kwargs: dict[str, object]) -> None:
    data = _save(_mode(mode), fmt, **kwargs)
    header = images.probe(data, "content", BIG)
    assert (header.width, header.height, header.alpha) == _pillow_header(data)
    assert (header.width, header.height) == (W, H)
    decoded = images.decode(data, "content", BIG)
    assert decoded.rgb.shape == (H, W, 3) and decoded.rgb.dtype == np.uint8
    assert (decoded.alpha is not None) == header.alpha


def test_an_animated_gif_and_webp_read_their_canvas() -> None:
    frames = [Image.fromarray(image_array(W, H, seed=i)) for i in range(3)]
    for fmt in ("GIF", "WEBP"):
        data = _save(frames[0], fmt, save_all=True, append_images=frames[1:])
        header = images.probe(data, "content", BIG)
        assert (header.width, header.height) == (W, H) == _pillow_header(data)[:2]


def test_a_gif_frame_beyond_the_screen_counts_as_pillow_counts_it() -> None:
    data = bytearray(_save(Image.fromarray(image_array(W, H)).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, 20, 10)  # a logical screen smaller than the frame
    header = images.probe(bytes(data), "content", BIG)
    assert (header.width, header.height) == (W, H) == _pillow_header(bytes(data))[:2]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_the_header_and_the_pixels_alike(fmt: str, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = Image.fromarray(image_array(W, H))
    extra = {"lossless": True} if fmt == "WEBP" else {}
    data = _save(source, fmt, exif=exif if fmt == "TIFF" else exif.tobytes(), **extra)
    header = images.probe(data, "content", BIG)
    assert header.shape == ((W, H) if orientation in (5, 6, 7, 8) else (H, W))
    decoded = images.decode(data, "content", BIG)
    with Image.open(io.BytesIO(data)) as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
    np.testing.assert_array_equal(decoded.rgb, expected)
    # Reduced towards a target, the orientation still holds.
    small = images.decode(data, "content", BIG, at_least=(header.height // 4, header.width // 4)).rgb
    assert small.shape[0] < header.height
    assert (small.shape[0] > small.shape[1]) == (header.height > header.width)


def test_an_xmp_orientation_in_a_jpeg_counts_when_exif_has_none() -> None:
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    segment = b"http://ns.adobe.com/xap/1.0/\x00" + xmp
    plain = _save(Image.fromarray(image_array(W, H)), "JPEG")
    data = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + plain[2:]
    header = images.probe(data, "content", BIG)
    assert header.shape == (W, H) == images.decode(data, "content", BIG).rgb.shape[:2]


# ---------------------------------------------------------------- hostile
def _refused(data: bytes, field: str = "styles[2].mask") -> str:
    with pytest.raises(DecodeFailed) as info:
        images.probe(data, field, BIG)
    assert info.value.reason is ErrorReason.DECODE_FAILED and info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    return str(info.value)


SAMPLES = {
    "png": _save(_mode("RGBA"), "PNG"),
    "jpeg": _save(_mode("RGB"), "JPEG"),
    "webp": _save(_mode("RGBA"), "WEBP"),
    "webp-vp8x": _save(_mode("RGB"), "WEBP", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x00\x00"),
    "gif": _save(_mode("P"), "GIF", transparency=2),
    "bmp": _save(_mode("RGB"), "BMP"),
    "tiff": _save(_mode("RGB"), "TIFF"),
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_cut_of_a_header_is_refused_as_cut_short(name: str) -> None:
    data = SAMPLES[name]
    full = images.probe(data, "content", BIG)
    for cut in range(1, 400):
        try:
            header = images.probe(data[:cut], "content", BIG)
        except StylizeError as exc:
            assert isinstance(exc, InvalidArgument), (cut, exc)
            continue
        # A prefix that holds the whole header reads the same header.
        assert header == full, cut


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_random_damage_to_a_header_never_escapes_as_another_error(name: str) -> None:
    rng = np.random.default_rng(sum(map(ord, name)))
    source = SAMPLES[name]
    for _ in range(400):
        data = bytearray(source)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, min(len(data), 96)))
            data[at] = int(rng.integers(0, 256))
        try:
            images.probe(bytes(data), "content", BIG)
        except StylizeError:
            pass


def test_a_segment_longer_than_the_file_is_cut_short() -> None:
    plain = SAMPLES["jpeg"]
    data = plain[:2] + b"\xff\xe2\xff\xff" + b"\x00" * 100
    assert "cut short" in _refused(data)
    png = with_chunks_before_idat(SAMPLES["png"], [struct.pack(">I", 0x7FFFFFFF) + b"tEXt"])
    assert "cut short" in _refused(png)


def test_endless_segments_before_the_frame_header_hit_the_limit() -> None:
    plain = SAMPLES["jpeg"]
    comments = b"\xff\xfe\x00\x03x" * (headers.MAX_STEPS + 10)
    message = _refused(plain[:2] + comments + plain[2:])
    assert f"{headers.MAX_STEPS} segments" in message and "limit" in message
    # Under the limit the same padding is skipped.
    few = b"\xff\xfe\x00\x03x" * 200
    assert images.probe(plain[:2] + few + plain[2:], "content", BIG).shape == (H, W)


def test_a_gif_comment_of_endless_sub_blocks_hits_the_limit() -> None:
    gif = SAMPLES["gif"]
    screen_end = 13 + (3 << ((gif[10] & 7) + 1))
    comment = b"\x21\xfe" + b"\x01x" * (headers.MAX_STEPS + 10) + b"\x00"
    assert "limit" in _refused(gif[:screen_end] + comment + gif[screen_end:])


def test_a_tiff_ifd_claiming_65535_entries_hits_the_limit() -> None:
    data = b"II*\x00\x08\x00\x00\x00" + struct.pack("<H", 65535) + b"\x00" * (65535 * 12)
    assert "limit" in _refused(data)


def test_a_text_bomb_png_is_read_without_inflating_a_byte() -> None:
    bomb = text_bomb_png(W, H, chunks=63, inflated=1 << 20)
    tracemalloc.start()
    try:
        header = images.probe(bomb, "content", BIG)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert header.shape == (H, W)
    assert peak < 16 * 1024, f"{peak} bytes allocated reading a header"  # one inflated chunk would be 1 MiB
    # Decoding (on the executor, after admission) inflates at most Pillow's small text limit, then refuses.
    with pytest.raises(DecodeFailed) as info:
        images.decode(bomb, "content", BIG, at_least=(16, 16))
    assert "text" in str(info.value) and str(PngImagePlugin.MAX_TEXT_CHUNK) in str(info.value)


def test_text_under_pillows_limit_still_decodes() -> None:
    text = png_chunk(b"tEXt", b"Comment\x00" + b"x" * 50_000)
    data = with_chunks_before_idat(SAMPLES["png"], [text] * 3)
    assert images.decode(data, "content", BIG).rgb.shape == (H, W, 3)


def test_pillow_is_kept_strict_and_its_text_limits_small() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert PngImagePlugin.MAX_TEXT_CHUNK <= 256 * 1024
    assert PngImagePlugin.MAX_TEXT_MEMORY <= 1024 * 1024


def test_a_frame_header_that_lies_is_refused_at_decode() -> None:
    # A fake 8x8 SOF ahead of the real one: the header reads 8x8, Pillow the last SOF.
    plain = SAMPLES["jpeg"]
    fake = b"\xff\xc0\x00\x11\x08\x00\x08\x00\x08\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    data = plain[:2] + fake + plain[2:]
    assert images.probe(data, "content", BIG).shape == (8, 8)
    with pytest.raises(DecodeFailed) as info:
        images.decode(data, "content", BIG)
    assert f"opens as {W}x{H}" in str(info.value)


def test_other_formats_and_empty_images_are_refused() -> None:
    for fmt in ("ICO", "PPM", "TGA"):
        assert "unrecognised format" in _refused(_save(Image.fromarray(image_array(16, 16)), fmt))
    zero = bytearray(SAMPLES["png"])
    struct.pack_into(">I", zero, 16, 0)
    with pytest.raises(InvalidArgument, match="no pixels"):
        images.probe(bytes(zero), "content", BIG)
    with pytest.raises(InvalidArgument, match="is empty"):
        images.probe(b"", "content", BIG)


def test_junk_between_jpeg_segments_is_skipped_as_pillow_skips_it() -> None:
    plain = SAMPLES["jpeg"]
    after_app0 = 4 + struct.unpack_from(">H", plain, 4)[0]
    data = plain[:after_app0] + b"\x00\x13\x37" + plain[after_app0:]
    assert images.probe(data, "content", BIG).shape == (H, W) == images.decode(data, "content", BIG).rgb.shape[:2]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I"])
def test_tiles_reduce_exactly_as_the_whole_image_would(mode: str) -> None:
    # 1500 x 1100 at factors (5, 4): tiles of whole blocks, ragged right and bottom edges.
    rng = np.random.default_rng(7)
    if mode == "I":
        source = Image.fromarray(rng.integers(0, 255, (1100, 1500)).astype(np.int32))
    else:
        source = Image.fromarray(rng.integers(0, 255, (1100, 1500, 4), dtype=np.uint8)).convert(mode)
    data = _save(source, "TIFF" if mode == "I" else "PNG")
    decoded = images.decode(data, "content", BIG, at_least=(1100 // 8, 1500 // 10))
    whole = source.reduce((5, 4))
    expected = np.asarray(whole.convert("L" if mode == "I" else whole.mode).convert("RGB"))
    np.testing.assert_array_equal(decoded.rgb, expected)


def test_a_very_wide_image_decodes_in_small_tiles() -> None:
    data = _save(Image.fromarray(image_array(40_000, 3)), "PNG")
    decoded = images.decode(data, "content", BIG, at_least=(2, 100))
    assert decoded.rgb.shape == (3, 200, 3)
