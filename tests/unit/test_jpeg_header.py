"""Intake's quick JPEG header walk gives exactly Pillow's answer, and spares Pillow for ordinary photos."""

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms
from PIL.ExifTags import Base

from service.photos import processing
from service.photos.jpeg_header import jpeg_frame
from service.photos.processing import HeaderIncomplete, PhotoRejected, check_jpeg_start
from service.reports.multipart import HEADER_BYTES
from tests.unit.test_photos import make_exif, two_tone

# Damaged EXIF and sizes over Pillow's limit make Pillow warn, whichever reading asks it.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),
    pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning"),
]

MAX_PIXELS = 40_000_000
SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP_TURNED = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'


# --- factories ---------------------------------------------------------------


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def jpeg(image: Image.Image | None = None, **save_options) -> bytes:
    buffer = io.BytesIO()
    (image or two_tone()).save(buffer, format="JPEG", quality=95, **save_options)
    return buffer.getvalue()


def exif_with(gps: bool = True, **tags) -> Image.Exif:
    exif = make_exif() if gps else Image.Exif()
    for name, value in tags.items():
        exif[getattr(Base, name)] = value
    return exif


def raw_exif(*entries: tuple[int, int, int, bytes]) -> bytes:
    """An EXIF segment's payload holding one directory of (tag, type, count, 4-byte value) entries, any
    types we like: Pillow's writer insists on the right type for each tag."""
    directory = struct.pack(">H", len(entries))
    for tag, kind, count, value in entries:
        directory += struct.pack(">HHL", tag, kind, count) + value
    return b"Exif\x00\x00MM\x00*" + struct.pack(">L", 8) + directory + b"\x00\x00\x00\x00"


def with_exif(payload: bytes) -> bytes:
    return insert_before(jpeg(), 0xDB, segment(0xE1, payload))


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, end) of each segment up to the first scan, in a file Pillow wrote."""
    found, offset = [], 2
    while True:
        marker, length = data[offset + 1], struct.unpack_from(">H", data, offset + 2)[0]
        found.append((marker, offset, offset + 2 + length))
        if marker == 0xDA:
            return found
        offset += 2 + length


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def insert_before(data: bytes, marker: int, extra: bytes) -> bytes:
    """`extra` bytes just before the first segment with `marker`."""
    offset = next(offset for found, offset, _ in segments(data) if found == marker)
    return data[:offset] + extra + data[offset:]


def frame_offset(data: bytes) -> int:
    return next(offset for marker, offset, _ in segments(data) if marker in (0xC0, 0xC2))


def declaring(data: bytes, width: int, height: int) -> bytes:
    """The same file with another size written in its frame header."""
    offset = frame_offset(data) + 5
    return data[:offset] + struct.pack(">HH", height, width) + data[offset + 4 :]


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def without_segment(data: bytes, marker: int) -> bytes:
    _, offset, end = next(found for found in segments(data) if found[0] == marker)
    return data[:offset] + data[end:]


def mpo() -> bytes:
    buffer = io.BytesIO()
    two_tone().save(buffer, format="MPO", save_all=True, append_images=[two_tone()], exif=make_exif())
    return buffer.getvalue()


def outcome(check, start: bytes, *, whole: bool, max_pixels: int):
    try:
        return ("answer", check(start, max_pixels, whole=whole))
    except PhotoRejected as rejected:
        return ("rejected", rejected.reason_code, rejected.message)
    except HeaderIncomplete:
        return ("incomplete",)


def assert_same_as_pillow(start: bytes | bytearray, *, whole: bool, max_pixels: int = MAX_PIXELS):
    quick = outcome(check_jpeg_start, start, whole=whole, max_pixels=max_pixels)
    pillow = outcome(processing._check_jpeg_start_with_pillow, start, whole=whole, max_pixels=max_pixels)
    assert quick == pillow
    return quick


GPS_PHOTO = jpeg(exif=make_exif())
PHONE_LIKE = jpeg(
    noise(120, 90), exif=exif_with(XResolution=72.0, YResolution=72.0, ResolutionUnit=2), icc_profile=SRGB_PROFILE
)

ORDINARY = {
    "baseline": jpeg(),
    "progressive": jpeg(noise(64, 48), progressive=True),
    "grey": jpeg(two_tone().convert("L")),
    "cmyk with an Adobe segment": jpeg(two_tone().convert("CMYK")),
    "300 KB of noise": jpeg(noise(500, 540)),
    "no chroma subsampling": jpeg(noise(40, 30), subsampling=0),
    "restart interval": jpeg(noise(40, 30), restart_marker_blocks=1),
    "gps": GPS_PHOTO,
    "phone-like": PHONE_LIKE,
    "southern and western gps": jpeg(exif=make_exif(latitude_ref="S", longitude_ref="W")),
    "exif without gps": jpeg(exif=exif_with(gps=False, Make="Apple", Model="iPhone 15")),
    "resolution in centimetres": jpeg(exif=exif_with(XResolution=30.0, ResolutionUnit=3)),
    "jfif dots per inch and exif": jpeg(exif=make_exif(), dpi=(300, 300)),
    "icc profile, comment and xmp": jpeg(exif=make_exif(), icc_profile=SRGB_PROFILE, comment=b"hi", xmp=XMP_TURNED),
    "two exif segments": insert_before(GPS_PHOTO, 0xDB, segment(0xE1, make_exif(latitude_ref="S").tobytes())),
    "fill bytes before a marker": insert_before(GPS_PHOTO, 0xDB, b"\xff\xff\xff"),
    "restart marker between segments": insert_before(GPS_PHOTO, 0xDB, b"\xff\xd0"),
}

ODD = {
    "bomb": declaring(GPS_PHOTO, 30_000, 30_000),
    "above Pillow's warning, below its error": declaring(GPS_PHOTO, 12_000, 12_000),
    "zero width": declaring(GPS_PHOTO, 0, 20),
    "no frame before the scan": without_segment(GPS_PHOTO, 0xC0),
    "two frames": insert_before(GPS_PHOTO, 0xC4, GPS_PHOTO[frame_offset(GPS_PHOTO) :][:19]),
    "12-bit samples": patched(GPS_PHOTO, frame_offset(GPS_PHOTO) + 4, b"\x0c"),
    "frame with a broken component entry": insert_before(
        GPS_PHOTO, 0xC4, segment(0xC0, b"\x08\x00\x14\x00\x28\x01\x01\x11\x00\x02")
    ),
    "mpo": mpo(),
    "empty exif": with_exif(b"Exif\x00\x00"),
    "garbled exif": with_exif(b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01"),
    "resolution Pillow cannot read": with_exif(
        raw_exif((Base.XResolution, 7, 1, b"\x01\x00\x00\x00"), (Base.ResolutionUnit, 3, 1, b"\x00\x02\x00\x00"))
    ),
    "resolution not a number": with_exif(
        raw_exif((Base.XResolution, 2, 4, b"abc\x00"), (Base.ResolutionUnit, 3, 1, b"\x00\x02\x00\x00"))
    ),
    "short jfif header": insert_before(jpeg(), 0xDB, segment(0xE0, b"JFIF\x00")),
    "short icc chunk": insert_before(GPS_PHOTO, 0xDB, segment(0xE2, b"ICC_PROFILE\x00")),
    "photoshop resources": insert_before(GPS_PHOTO, 0xDB, segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00")),
    "bad quantisation table": insert_before(GPS_PHOTO, 0xC0, segment(0xDB, b"\x00" * 30)),
    "temporary marker": insert_before(GPS_PHOTO, 0xDB, b"\xff\x01"),
    "escaped byte between segments": insert_before(GPS_PHOTO, 0xDB, b"\xff\x00"),
    "junk between segments": insert_before(GPS_PHOTO, 0xDB, b"junk"),
    "segment too short for its length": insert_before(GPS_PHOTO, 0xDB, b"\xff\xfe\x00\x01"),
    "not a jpeg": b"\x89PNG\r\n\x1a\n" + GPS_PHOTO[8:],
}

# --- the same answers ---------------------------------------------------------


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("data", [*ORDINARY.values(), *ODD.values()], ids=[*ORDINARY, *ODD])
def test_header_check_answers_as_pillow_does(data, whole):
    assert_same_as_pillow(data[:HEADER_BYTES], whole=whole)
    assert_same_as_pillow(data, whole=whole)


@pytest.mark.parametrize("data", ORDINARY.values(), ids=ORDINARY.keys())
def test_ordinary_photos_are_read_without_pillows_parser(data):
    frame = jpeg_frame(data)
    assert frame is not None
    with Image.open(io.BytesIO(data)) as image:
        assert frame[:2] == image.size
        assert frame[2] == image.info.get("exif")


def test_phone_photo_location_is_read_without_opening_it_in_pillow(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Pillow's JPEG opener was asked")

    monkeypatch.setattr(Image, "open", refuse)
    latitude, longitude = check_jpeg_start(bytearray(PHONE_LIKE), MAX_PIXELS, whole=True)
    assert latitude == pytest.approx(10.776) and longitude == pytest.approx(106.701)


@pytest.mark.parametrize(
    "data", [ODD["bomb"], ODD["above Pillow's warning, below its error"]], ids=["error", "warning"]
)
def test_bomb_is_refused_in_pillows_words(data):
    answer = assert_same_as_pillow(data, whole=False)
    assert answer[:2] == ("rejected", "decompression_bomb")


def test_photo_above_our_own_limit_is_refused_the_same_way():
    answer = assert_same_as_pillow(GPS_PHOTO, whole=False, max_pixels=100)
    assert answer[:2] == ("rejected", "decompression_bomb")


@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("data", [GPS_PHOTO, ORDINARY["icc profile, comment and xmp"], ORDINARY["two exif segments"]])
def test_photo_cut_off_anywhere_in_its_header_answers_as_pillow_does(data, whole):
    scan_end = segments(data)[-1][2]
    for length in range(scan_end + 8):
        assert_same_as_pillow(data[:length], whole=whole)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(
    base=st.sampled_from([GPS_PHOTO, PHONE_LIKE, ORDINARY["progressive"]]),
    changes=st.lists(st.tuples(st.integers(0, 2_000), st.integers(0, 255)), min_size=1, max_size=4),
    whole=st.booleans(),
)
def test_damaged_header_answers_as_pillow_does(base, changes, whole):
    data = bytearray(base)
    for offset, value in changes:
        data[offset % segments(base)[-1][2]] = value
    assert_same_as_pillow(data, whole=whole)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(garbage=st.binary(min_size=1, max_size=24), whole=st.booleans())
def test_garbage_after_start_of_image_answers_as_pillow_does(garbage, whole):
    assert_same_as_pillow(GPS_PHOTO[:2] + garbage + GPS_PHOTO[2:], whole=whole)
