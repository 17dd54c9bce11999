"""An image's dimensions, EXIF orientation and alpha, read straight from the
bytes of its header (PNG IHDR, JPEG SOF, WebP VP8/VP8L/VP8X, GIF, BMP, TIFF)
on the event loop at admission: nothing is inflated, decoded or copied.
Segments and chunks are skipped by their declared lengths (text and metadata
unread); at most MAX_SCAN_BYTES bytes in MAX_STEPS segments, chunks, blocks
or IFD entries are examined. Past that, cut short or malformed: DECODE_FAILED
naming the field. Decoding uses this orientation and refuses an image whose
decoded size differs, so the shapes priced are the shapes decoded.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from stylize_server.job.errors import DecodeFailed

ACCEPTED = "PNG, JPEG, WebP, BMP, GIF or TIFF"
# Enough for real files' metadata before the pixels (segments are skipped, not
# read); a few hundred microseconds of Python at worst.
MAX_SCAN_BYTES = 64 * 1024
MAX_STEPS = 1024
# XMP is searched for an orientation only in its first bytes (C speed).
XMP_WINDOW = 64 * 1024
# EXIF orientations that swap width and height.
TRANSPOSING = frozenset({5, 6, 7, 8})
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')
_UINT = {(order, size): struct.Struct(order + code) for order in "<>" for size, code in ((2, "H"), (4, "I"), (8, "Q"))}
_GREY_RAMP = bytes(i // 3 for i in range(768))


@dataclass(frozen=True)
class Header:
    """What an image's header says, read without decoding a pixel."""

    width: int  # after EXIF orientation
    height: int
    format: str
    alpha: bool
    orientation: int = 1  # EXIF 1..8, applied by decode

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) as stored in the file, before orientation."""
        if self.orientation in TRANSPOSING:
            return self.height, self.width
        return self.width, self.height


class _Short(Exception):
    """A read past the end of the data."""


class _Scan:
    """Bounded, copy-free reads from `data`, counting bytes and steps."""

    def __init__(self, data: bytes, field: str, fmt: str) -> None:
        self.data, self.field, self.fmt = data, field, fmt
        self.scanned = 0
        self.steps = 0
        self.xmp_searched = False

    def fail(self, what: str) -> DecodeFailed:
        return DecodeFailed(
            self.field, f"malformed {self.fmt} header: {what}; the bytes are not a valid {ACCEPTED} file"
        )

    def _need(self, off: int, n: int) -> None:
        if off < 0 or off + n > len(self.data):
            raise _Short
        self.scanned += n
        if self.scanned > MAX_SCAN_BYTES:
            raise self._over()

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise self._over()

    def _over(self) -> DecodeFailed:
        return DecodeFailed(
            self.field,
            f"cannot read the image's header: the {self.fmt} header is not within {MAX_STEPS} segments and "
            f"{MAX_SCAN_BYTES} bytes read (the limit); remove the metadata before the pixels",
        )

    def u8(self, off: int) -> int:
        self._need(off, 1)
        return self.data[off]

    def uint(self, off: int, size: int, order: str) -> int:
        """An unsigned integer of `size` (2, 4 or 8) bytes, `order` "<" or ">"."""
        self._need(off, size)
        return int(_UINT[order, size].unpack_from(self.data, off)[0])

    def tag(self, off: int, n: int = 4) -> bytes:
        self._need(off, n)
        return self.data[off : off + n]


def read(data: bytes, field: str) -> Header:
    """The header of `data`, or DecodeFailed naming `field`."""
    for signature, fmt, parse in _PARSERS:
        if data.startswith(signature) and (fmt != "WebP" or data.startswith(b"WEBP", 8)):
            scan = _Scan(data, field, fmt)
            try:
                return parse(scan)
            except _Short:
                raise DecodeFailed(
                    field,
                    f"cannot decode the image: the {fmt} data ends at byte {len(data)}, inside its header (cut short); "
                    f"send a complete {ACCEPTED} file",
                ) from None
    raise DecodeFailed(field, f"cannot decode the image: the bytes are not a {ACCEPTED} file (unrecognised format)")


def _header(w: int, h: int, fmt: str, alpha: bool, orientation: int) -> Header:
    orientation = orientation if 1 <= orientation <= 8 else 1
    if orientation in TRANSPOSING:
        w, h = h, w
    return Header(width=w, height=h, format=fmt, alpha=alpha, orientation=orientation)


# ---------------------------------------------------------------- PNG
def _png(s: _Scan) -> Header:
    if s.uint(8, 4, ">") != 13 or s.tag(12) != b"IHDR":
        raise s.fail("the first chunk is not IHDR")
    w, h = s.uint(16, 4, ">"), s.uint(20, 4, ">")
    colour = s.u8(25)
    trns, orientation = False, 1
    pos = 33
    # Up to the pixels: tRNS (alpha of a palette) and eXIf (orientation) come
    # before IDAT; Pillow's open reads no further either. Text is skipped.
    while True:
        s.step()
        length, kind = s.uint(pos, 4, ">"), s.tag(pos + 4)
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"tRNS":
            trns = True
        elif kind == b"eXIf" and orientation == 1:
            orientation = _exif_orientation(s, pos + 8, pos + 8 + length)
        pos += 12 + length
    alpha = colour in (4, 6) or (colour == 3 and trns)
    return _header(w, h, "PNG", alpha, orientation)


# --------------------------------------------------------------- JPEG
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_XMP_NS = b"http://ns.adobe.com/xap/1.0/\x00"


def _jpeg(s: _Scan) -> Header:
    size: tuple[int, int] | None = None
    exif: int | None = None
    xmp = 1
    pos = 2
    # Every marker segment up to the first scan (SOS), as Pillow reads them:
    # SOF gives the size, APP1 the EXIF (or XMP) orientation; the rest is skipped.
    while True:
        s.step()
        if s.u8(pos) != 0xFF:  # junk between segments, which Pillow skips too
            pos += 1
            continue
        marker = s.u8(pos + 1)
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x00:  # an escaped 0xFF outside a scan: skipped like junk
            pos += 2
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            pos += 2
            continue
        if marker == 0xD9:
            raise s.fail("the image ends before its frame header")
        if marker == 0xDA:
            if size is None:
                raise s.fail("the scan starts before the frame header (SOF)")
            break
        length = s.uint(pos + 2, 2, ">")
        if length < 2:
            raise s.fail(f"segment length {length} at byte {pos}")
        body, end = pos + 4, pos + 2 + length
        if marker in _SOF and size is None:
            size = (s.uint(body + 3, 2, ">"), s.uint(body + 1, 2, ">"))
        elif marker == 0xE1:
            if exif is None and end - body >= 6 and s.tag(body, 6) == b"Exif\x00\x00":
                exif = _exif_orientation(s, body + 6, end)
            elif end - body > len(_XMP_NS) and s.data.startswith(_XMP_NS, body):
                xmp = _xmp_orientation(s, body, end)
        pos = end
    assert size is not None
    return _header(size[0], size[1], "JPEG", False, exif if exif not in (None, 1) else xmp)


# --------------------------------------------------------------- WebP
def _webp(s: _Scan) -> Header:
    kind, length = s.tag(12), s.uint(16, 4, "<")
    body = 20
    if kind == b"VP8 ":
        if s.tag(body + 3, 3) != b"\x9d\x01\x2a":
            raise s.fail("no VP8 start code")
        return _header(s.uint(body + 6, 2, "<") & 0x3FFF, s.uint(body + 8, 2, "<") & 0x3FFF, "WEBP", False, 1)
    if kind == b"VP8L":
        if s.u8(body) != 0x2F:
            raise s.fail("no VP8L signature")
        bits = s.uint(body + 1, 4, "<")
        w, h = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        return _header(w, h, "WEBP", bool((bits >> 28) & 1), 1)
    if kind != b"VP8X":
        raise s.fail(f"first chunk {kind!r} is none of VP8, VP8L, VP8X")
    flags = s.u8(body)
    w = 1 + (s.uint(body + 4, 4, "<") & 0xFFFFFF)
    h = 1 + (s.uint(body + 7, 4, "<") & 0xFFFFFF)
    orientation = 1
    if flags & 0x0C:  # EXIF or XMP: their chunks follow the image data, found by skipping lengths
        exif: int | None = None
        xmp = 1
        pos = body + length + (length & 1)
        while pos + 8 <= len(s.data):
            s.step()
            kind, length = s.tag(pos), s.uint(pos + 4, 4, "<")
            start, end = pos + 8, min(len(s.data), pos + 8 + length)
            if kind == b"EXIF" and exif is None:
                skip = 6 if s.data.startswith(b"Exif\x00\x00", start) else 0
                exif = _exif_orientation(s, start + skip, end)
            elif kind == b"XMP ":
                xmp = _xmp_orientation(s, start, end)
            pos = start + length + (length & 1)
        orientation = exif if exif not in (None, 1) else xmp
    return _header(w, h, "WEBP", bool(flags & 0x10), orientation)


# ---------------------------------------------------------------- GIF
def _gif(s: _Scan) -> Header:
    w, h = s.uint(6, 2, "<"), s.uint(8, 2, "<")
    flags = s.u8(10)
    pos = 13
    palette_needed = False
    if flags & 0x80:
        n = 3 << ((flags & 7) + 1)
        palette_needed = s.tag(pos, n) != _GREY_RAMP[:n]
        pos += n
    transparent = False
    # Extensions up to the first image descriptor, whose extent Pillow adds to the screen size.
    while True:
        s.step()
        byte = s.u8(pos)
        if byte == 0x3B:
            raise s.fail("the file ends before its first image")
        if byte == 0x21:
            label = s.u8(pos + 1)
            pos += 2
            first = True
            while (n := s.u8(pos)) != 0:
                if label == 0xF9 and first:
                    transparent = bool(s.u8(pos + 1) & 1)
                first = False
                s.step()
                pos += 1 + n
            pos += 1
        elif byte == 0x2C:
            x, y = s.uint(pos + 1, 2, "<"), s.uint(pos + 3, 2, "<")
            fw, fh, local = s.uint(pos + 5, 2, "<"), s.uint(pos + 7, 2, "<"), s.u8(pos + 9)
            w, h = max(w, x + fw), max(h, y + fh)
            if local & 0x80:
                n = 3 << ((local & 7) + 1)
                palette_needed = s.tag(pos + 10, n) != _GREY_RAMP[:n]
            break
        else:
            pos += 1  # Pillow skips stray bytes between blocks
    # Pillow opens a frame with a grey-ramp palette as mode L, whose transparency is not alpha.
    return _header(w, h, "GIF", transparent and palette_needed, 1)


# ---------------------------------------------------------------- BMP
_BMP_ALPHA_MASKS = frozenset(
    {
        (0xFF000000, 0xFF0000, 0xFF00, 0xFF),
        (0xFF, 0xFF00, 0xFF0000, 0xFF000000),
        (0xFF0000, 0xFF00, 0xFF, 0xFF000000),
        (0xFF000000, 0xFF00, 0xFF, 0xFF0000),
        (0, 0, 0, 0),
    }
)


def _bmp(s: _Scan) -> Header:
    size = s.uint(14, 4, "<")
    if size == 12:
        return _header(s.uint(18, 2, "<"), s.uint(20, 2, "<"), "BMP", False, 1)
    if size not in (40, 52, 56, 64, 108, 124):
        raise s.fail(f"unsupported header size {size}")
    w, h = s.uint(18, 4, "<"), s.uint(22, 4, "<")
    if s.u8(25) == 0xFF:  # negative height: rows stored top-down
        h = 2**32 - h
    bits, compression = s.uint(28, 2, "<"), s.uint(30, 4, "<")
    alpha = False
    if bits == 32 and compression == 3:  # BITFIELDS
        masks = tuple(s.uint(54 + 4 * i, 4, "<") for i in range(3))
        a_mask = s.uint(66, 4, "<") if size >= 56 else 0
        alpha = (*masks, a_mask) in _BMP_ALPHA_MASKS
    return _header(w, h, "BMP", alpha, 1)


# --------------------------------------------------------------- TIFF
def _tiff(s: _Scan) -> Header:
    order = "<" if s.data[0] == 0x49 else ">"
    big = s.uint(2, 2, order) == 43
    ifd = s.uint(8, 8, order) if big else s.uint(4, 4, order)
    tags, xmp = _ifd(s, 0, ifd, order, big, {256, 257, 262, 274, 277, 338})
    if 256 not in tags or 257 not in tags:
        raise s.fail("the first IFD has no ImageWidth or ImageLength")
    orientation = tags.get(274, 1)
    if orientation == 1 and xmp is not None:
        orientation = _xmp_orientation(s, xmp[0], xmp[0] + xmp[1])
    photometric, samples, extra = tags.get(262, 1), tags.get(277, 1), tags.get(338, -1)
    colours = 3 if photometric in (2, 6) else 4 if photometric == 5 else 1
    alpha = samples > colours and extra != 0 and photometric in (0, 1, 2, 3)
    return _header(tags[256], tags[257], "TIFF", alpha, orientation)


def _ifd(
    s: _Scan, base: int, ifd: int, order: str, big: bool, wanted: set[int]
) -> tuple[dict[int, int], tuple[int, int] | None]:
    """The first value of each wanted (SHORT or LONG) tag of the IFD at
    `base + ifd`, and where its XMP (tag 700) lies: (offset, length)."""
    entry, head = (20, 8) if big else (12, 2)
    count = s.uint(base + ifd, 8, order) if big else s.uint(base + ifd, 2, order)
    found: dict[int, int] = {}
    xmp: tuple[int, int] | None = None
    for i in range(count):
        s.step()
        at = base + ifd + head + entry * i
        tag = s.uint(at, 2, order)
        if tag == 700:
            n = s.uint(at + 4, 8, order) if big else s.uint(at + 4, 4, order)
            value = at + (12 if big else 8)
            inline = n <= (8 if big else 4)
            xmp = (value if inline else base + (s.uint(value, 8, order) if big else s.uint(value, 4, order)), n)
        if tag not in wanted:
            continue
        kind = s.uint(at + 2, 2, order)
        value = at + (12 if big else 8)
        if kind == 3:
            found[tag] = s.uint(value, 2, order)
        elif kind == 4:
            found[tag] = s.uint(value, 4, order)
        elif kind == 16 and big:
            found[tag] = s.uint(value, 8, order)
    return found, xmp


# ------------------------------------------------------- orientation
def _exif_orientation(s: _Scan, start: int, end: int) -> int:
    """The Orientation tag of an EXIF (TIFF-structured) block's IFD0, or 1
    where it has none or is malformed (as Pillow's reading treats it)."""
    if end - start < 8:
        return 1
    order = {b"II": "<", b"MM": ">"}.get(s.tag(start, 2))
    if order is None:
        return 1
    try:
        tags, _ = _ifd(s, start, s.uint(start + 4, 4, order), order, False, {274})
    except _Short:
        return 1
    value = tags.get(274, 1)
    return value if 1 <= value <= 8 else 1


def _xmp_orientation(s: _Scan, start: int, end: int) -> int:
    """tiff:Orientation in the first XMP_WINDOW bytes of the image's first
    XMP packet (a later one is not searched: the search is the costly part)."""
    end = min(end, start + XMP_WINDOW, len(s.data))
    if s.xmp_searched or start < 0 or end <= start:
        return 1
    s.xmp_searched = True
    match = _XMP_ORIENTATION.search(s.data, start, end)
    value = int(match[2]) if match else 1
    return value if 1 <= value <= 8 else 1


_PARSERS: tuple[tuple[tuple[bytes, ...], str, Callable[[_Scan], Header]], ...] = (
    ((b"\x89PNG\r\n\x1a\n",), "PNG", _png),
    ((b"\xff\xd8",), "JPEG", _jpeg),
    ((b"RIFF",), "WebP", _webp),
    ((b"GIF87a", b"GIF89a"), "GIF", _gif),
    ((b"BM",), "BMP", _bmp),
    ((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), "TIFF", _tiff),
)
