"""Photos: recognised by their bytes, stored upright and without the citizen's metadata."""

import io
import struct
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageCms, PngImagePlugin
from PIL.ExifTags import GPS, Base

from service.photos.content import SNIFF_BYTES, extension_for, sniff_image_type
from service.photos.processing import PhotoRejected, check_header, process_photo, read_gps

# Nguyễn Huệ walking street: 10°46'33.6"N 106°42'3.6"E
HO_CHI_MINH_CITY_DMS = ((10, 46, 33.6), "N", (106, 42, 3.6), "E")


# --- factories ---------------------------------------------------------------


def make_exif(
    *,
    latitude=HO_CHI_MINH_CITY_DMS[0],
    latitude_ref=HO_CHI_MINH_CITY_DMS[1],
    longitude=HO_CHI_MINH_CITY_DMS[2],
    longitude_ref=HO_CHI_MINH_CITY_DMS[3],
    orientation: int | None = None,
    taken: str | None = None,
    offset: str | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    exif[Base.Make] = "Apple"
    exif[Base.Model] = "iPhone 15"
    if orientation:
        exif[Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[GPS.GPSLatitudeRef] = latitude_ref
    gps[GPS.GPSLatitude] = tuple(float(part) for part in latitude)
    gps[GPS.GPSLongitudeRef] = longitude_ref
    gps[GPS.GPSLongitude] = tuple(float(part) for part in longitude)
    details = exif.get_ifd(ExifTags.IFD.Exif)
    if taken:
        details[Base.DateTimeOriginal] = taken
    if offset:
        details[Base.OffsetTimeOriginal] = offset
    return exif


def two_tone(size=(40, 20)) -> Image.Image:
    """Red left half, blue right half, so a rotation shows where each half went."""
    image = Image.new("RGB", size, "blue")
    image.paste("red", (0, 0, size[0] // 2, size[1]))
    return image


def save_jpeg(path: Path, image: Image.Image | None = None, **save_options) -> Path:
    (image or two_tone()).save(path, format="JPEG", quality=95, **save_options)
    return path


def blank_png_declaring(path: Path, width: int, height: int) -> Path:
    """A genuine 1-bit PNG of width x height whose zeros compress to almost nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def heic_encoder_missing() -> bool:
    return not pillow_heif.libheif_info().get("encoders", {}).get("x265")


def process(tmp_path: Path, src: Path, **options):
    out = tmp_path / "out"
    return process_photo(src, out / "photo.jpg", out / "thumb.jpg", **options)


def assert_no_metadata(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "JPEG"
        exif = image.getexif()
        assert len(exif) == 0
        assert exif.get_ifd(ExifTags.IFD.GPSInfo) == {}
        assert Base.Make not in exif and Base.Model not in exif
        assert not {"exif", "xmp", "icc_profile", "comment"} & set(image.info)
    raw = path.read_bytes()
    assert b"Exif\x00\x00" not in raw and b"Apple" not in raw and b"iPhone" not in raw


# --- sniffing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "mime", "extension"),
    [
        ("JPEG", "image/jpeg", ".jpg"),
        ("PNG", "image/png", ".png"),
        ("WEBP", "image/webp", ".webp"),
    ],
)
def test_photo_type_is_recognised_from_its_first_bytes(format, mime, extension):
    head = encoded(two_tone(), format)[:SNIFF_BYTES]
    assert sniff_image_type(head) == mime
    assert extension_for(mime) == extension


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"])
def test_heif_brands_are_recognised_as_heic(brand):
    head = b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1heic"
    assert sniff_image_type(head) == "image/heic"
    assert extension_for("image/heic") == ".heic"


@pytest.mark.parametrize(
    "head",
    [
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
        b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf",  # AVIF behind a generic brand
        b"\x00\x00\x00\x14ftypisom\x00\x00\x02\x00isom",  # an MP4 video
        b"GIF89a\x01\x00\x01\x00",
        b"",
    ],
)
def test_avif_video_and_other_files_are_not_photos(head):
    assert sniff_image_type(head) is None


def test_text_file_named_like_a_photo_is_not_a_photo(tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("Đường Nguyễn Huệ bị ngập nước\n" * 10, encoding="utf-8")
    assert sniff_image_type(fake.read_bytes()[:SNIFF_BYTES]) is None
    with pytest.raises(PhotoRejected) as rejected:
        process(tmp_path, fake)
    assert rejected.value.reason_code == "unreadable"


def test_missing_source_file_is_a_storage_error_not_a_rejection(tmp_path):
    with pytest.raises(FileNotFoundError):
        process(tmp_path, tmp_path / "gone.jpg")


def test_unknown_type_has_no_extension():
    with pytest.raises(ValueError):
        extension_for("image/gif")


# --- location and time -------------------------------------------------------


def test_location_is_read_from_exif_gps(tmp_path):
    photo = save_jpeg(tmp_path / "in.jpg", exif=make_exif())
    latitude, longitude = read_gps(photo)
    assert latitude == pytest.approx(10.776, abs=1e-6)
    assert longitude == pytest.approx(106.701, abs=1e-6)


def test_southern_and_western_references_give_negative_coordinates(tmp_path):
    # Rio de Janeiro: 22°54'30"S 43°11'47"W
    exif = make_exif(latitude=(22, 54, 30), latitude_ref="S", longitude=(43, 11, 47), longitude_ref="W")
    latitude, longitude = read_gps(save_jpeg(tmp_path / "in.jpg", exif=exif))
    assert latitude == pytest.approx(-(22 + 54 / 60 + 30 / 3600))
    assert longitude == pytest.approx(-(43 + 11 / 60 + 47 / 3600))


@pytest.mark.parametrize(
    "gps",
    [
        {"latitude": (0, 0, 0), "longitude": (0, 0, 0)},  # receiver without a fix
        {"latitude": (95, 0, 0)},  # no such latitude
        {"longitude": (181, 0, 0)},
        {"latitude_ref": ""},
    ],
)
def test_impossible_locations_are_ignored(tmp_path, gps):
    assert read_gps(save_jpeg(tmp_path / "in.jpg", exif=make_exif(**gps))) is None


def test_photo_without_exif_or_unreadable_has_no_location(tmp_path):
    assert read_gps(save_jpeg(tmp_path / "plain.jpg")) is None
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a photo")
    assert read_gps(junk) is None


def test_processing_reports_location_and_time_taken(tmp_path):
    exif = make_exif(taken="2024:05:04 08:30:00")
    result = process(tmp_path, save_jpeg(tmp_path / "in.jpg", exif=exif))
    assert result.gps == pytest.approx((10.776, 106.701))
    # No offset in the EXIF: the camera clock is taken to be Vietnamese time.
    assert result.taken_at == datetime(2024, 5, 4, 8, 30, tzinfo=timezone(timedelta(hours=7)))


def test_time_taken_uses_the_recorded_offset(tmp_path):
    exif = make_exif(taken="2024:05:04 08:30:00", offset="+09:00")
    result = process(tmp_path, save_jpeg(tmp_path / "in.jpg", exif=exif))
    assert result.taken_at == datetime(2024, 5, 4, 8, 30, tzinfo=timezone(timedelta(hours=9)))
    assert result.taken_at.utcoffset() == timedelta(hours=9)


# --- the stored photo --------------------------------------------------------


def test_stored_photo_carries_no_location_camera_or_other_metadata(tmp_path):
    source = save_jpeg(
        tmp_path / "in.jpg",
        exif=make_exif(taken="2024:05:04 08:30:00"),
        xmp=b"<x:xmpmeta><exif:GPSLatitude>10,46.56N</exif:GPSLatitude></x:xmpmeta>",
        comment=b"iPhone of Nguyen Van A",  # Pillow's JPEG encoder copies comments over
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    process(tmp_path, source)
    assert_no_metadata(tmp_path / "out" / "photo.jpg")
    assert_no_metadata(tmp_path / "out" / "thumb.jpg")


def test_sideways_photo_is_stored_upright(tmp_path):
    # 40x20 pixels tagged Orientation=6: the camera was turned 90° clockwise.
    source = save_jpeg(tmp_path / "in.jpg", exif=make_exif(orientation=6))
    result = process(tmp_path, source)
    assert (result.width, result.height) == (20, 40)
    with Image.open(tmp_path / "out" / "photo.jpg") as stored:
        assert stored.size == (20, 40)
        red, green, blue = stored.getpixel((10, 5))  # the left (red) half is now on top
        assert red > 200 and blue < 60
        red, green, blue = stored.getpixel((10, 35))
        assert blue > 200 and red < 60


def test_transparent_png_is_stored_as_jpeg_on_white(tmp_path):
    image = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 20, 20))
    image.save(tmp_path / "in.png")
    result = process(tmp_path, tmp_path / "in.png")
    assert (result.width, result.height, result.gps, result.taken_at) == (40, 20, None, None)
    with Image.open(tmp_path / "out" / "photo.jpg") as stored:
        assert (stored.format, stored.mode) == ("JPEG", "RGB")
        assert min(stored.getpixel((35, 10))) > 245  # transparent became white
        red, green, blue = stored.getpixel((5, 10))
        assert red > 200 and green < 60 and blue < 60


def test_thumbnail_longest_side_is_thumb_size(tmp_path):
    source = save_jpeg(tmp_path / "in.jpg", two_tone((1200, 800)))
    result = process(tmp_path, source, thumb_size=480)
    assert (result.width, result.height) == (1200, 800)
    with Image.open(tmp_path / "out" / "thumb.jpg") as thumbnail:
        assert thumbnail.size == (480, 320)


def test_writing_leaves_no_temporary_files(tmp_path):
    process(tmp_path, save_jpeg(tmp_path / "in.jpg"))
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["photo.jpg", "thumb.jpg"]


def test_failed_write_keeps_the_previous_file_whole(tmp_path, monkeypatch):
    source = save_jpeg(tmp_path / "in.jpg")
    destination = tmp_path / "out" / "photo.jpg"
    destination.parent.mkdir()
    destination.write_bytes(b"previous photo")

    def crash_midway(self, file, *args, **kwargs):
        file.write(b"\xff\xd8\xff half a JPEG")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        process(tmp_path, source)
    assert destination.read_bytes() == b"previous photo"
    assert [path.name for path in destination.parent.iterdir()] == ["photo.jpg"]


# --- hostile and broken uploads ----------------------------------------------


def test_decompression_bomb_png_is_refused_from_its_header(tmp_path):
    # 30000 x 30000 = 900 megapixels in a file of about a hundred kilobytes.
    bomb = blank_png_declaring(tmp_path / "bomb.png", 30_000, 30_000)
    assert bomb.stat().st_size < 500_000
    with pytest.raises(PhotoRejected) as rejected:
        process(tmp_path, bomb)
    assert rejected.value.reason_code == "decompression_bomb"
    # Our limit in our words, not Pillow's (its message names its own limit, 178956970).
    assert rejected.value.message == "photo is 900000000 pixels, more than the 40000000 allowed"
    assert not (tmp_path / "out").exists()


def test_photo_above_our_limit_but_below_pillows_is_refused(tmp_path):
    # 7000 x 7000 = 49 megapixels: Pillow would decode it, our 40 MP limit must not.
    bomb = blank_png_declaring(tmp_path / "big.png", 7_000, 7_000)
    with pytest.raises(PhotoRejected) as rejected:
        process(tmp_path, bomb)
    assert rejected.value.reason_code == "decompression_bomb"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pillows_bomb_warning_is_refused_too(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5_000)  # 100x100 now sits in the warning range
    source = save_jpeg(tmp_path / "in.jpg", two_tone((100, 100)))
    with pytest.raises(PhotoRejected) as rejected:
        process(tmp_path, source, max_pixels=1_000_000)
    assert rejected.value.reason_code == "decompression_bomb"


def test_the_intake_check_of_a_png_reads_its_header_and_never_its_pixels(tmp_path, monkeypatch):
    # Pillow looks for a PNG's EXIF after its pixels by decoding them all: at intake a 36-megapixel
    # screenshot would cost a hundred megabytes and a tenth of a second before the answer.
    decoded = []
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda image: decoded.append(image))
    with open(blank_png_declaring(tmp_path / "big.png", 6_000, 6_000), "rb") as png:
        assert check_header(png, 40_000_000) is None
    assert decoded == []


def test_truncated_jpeg_is_unreadable(tmp_path):
    whole = encoded(Image.effect_noise((200, 200), 64).convert("RGB"), "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PhotoRejected) as rejected:
        process(tmp_path, truncated)
    assert rejected.value.reason_code == "unreadable"
    assert not (tmp_path / "out" / "photo.jpg").exists()


# --- HEIC from iPhones -------------------------------------------------------


@pytest.mark.skipif(heic_encoder_missing(), reason="pillow-heif here has no HEVC (x265) encoder")
def test_iphone_heic_is_recognised_and_stored_as_clean_jpeg(tmp_path):
    source = tmp_path / "IMG_0001.HEIC"
    two_tone().save(source, format="HEIF", exif=make_exif(taken="2024:05:04 08:30:00"))
    assert sniff_image_type(source.read_bytes()[:SNIFF_BYTES]) == "image/heic"
    assert read_gps(source) == pytest.approx((10.776, 106.701))
    result = process(tmp_path, source)
    assert (result.width, result.height) == (40, 20)
    assert result.gps == pytest.approx((10.776, 106.701))
    assert result.taken_at == datetime(2024, 5, 4, 8, 30, tzinfo=timezone(timedelta(hours=7)))
    assert_no_metadata(tmp_path / "out" / "photo.jpg")
