"""Turn an uploaded photo into a clean JPEG and a thumbnail, keeping only what we need.

Pure functions over files: no database, no web framework. The location and time
a photo was taken are read from EXIF *before* the metadata is thrown away, because
citizens' photos must never be published with their GPS position, phone model or
other EXIF/XMP data inside them.
"""

import io
import math
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import BinaryIO

import pillow_heif
from PIL import ExifTags, Image, ImageCms, ImageOps
from PIL.ExifTags import GPS, Base

from service.photos.jpeg_header import jpeg_frame

# HEIC is what iPhones upload by default; the opener lets Image.open read it.
pillow_heif.register_heif_opener()

# Only the decoders for the types content.sniff_image_type accepts: every other
# Pillow plugin is attack surface a citizen's upload has no reason to reach.
_ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF")

# EXIF times are the camera's wall clock with no zone unless OffsetTimeOriginal
# is present. Phones set their clock to local time, this service serves Ho Chi
# Minh City, and Vietnam has no daylight saving, so +07:00 is the honest guess.
CAMERA_CLOCK_ZONE = timezone(timedelta(hours=7), "ICT")

_SRGB = ImageCms.createProfile("sRGB")


class PhotoRejected(Exception):
    """The upload is not a photo we will store; `reason_code` is stable for clients."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class ProcessedPhoto:
    width: int
    height: int
    gps: tuple[float, float] | None  # (lat, lon) from EXIF before stripping
    taken_at: datetime | None


def process_photo(
    src: Path,
    dest: Path,
    thumb_dest: Path,
    *,
    max_pixels: int = 40_000_000,
    thumb_size: int = 480,
    quality: int = 85,
) -> ProcessedPhoto:
    """Re-encode `src` as an upright, metadata-free sRGB JPEG at `dest` plus a thumbnail.

    Raises PhotoRejected("decompression_bomb" | "unreadable", ...).
    """
    # The file is opened outside the error mapping: a missing or unreadable path
    # is our storage failing (retry later), not a bad upload to reject for good.
    with (
        open(src, "rb") as file,
        _pillow_failures_rejected(max_pixels),
        Image.open(file, formats=_ALLOWED_FORMATS) as image,
    ):
        _refuse_bombs(image.size, max_pixels)  # header only: nothing decoded yet
        exif = image.getexif()
        gps = _gps_from_exif(exif)
        taken_at = _taken_at_from_exif(exif)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # in place: one full-size copy fewer
        clean = _to_plain_srgb(image)

    _write_jpeg_atomically(clean, dest, quality=quality)
    thumbnail = clean.copy()
    thumbnail.thumbnail((thumb_size, thumb_size), Image.Resampling.LANCZOS)
    _write_jpeg_atomically(thumbnail, thumb_dest, quality=quality)
    return ProcessedPhoto(width=clean.width, height=clean.height, gps=gps, taken_at=taken_at)


def read_gps(src: Path | BinaryIO) -> tuple[float, float] | None:
    """(lat, lon) from the photo's EXIF (a path or a seekable file), reading only its header; None if absent or unreadable.

    Meant for intake, before the photo is processed: a hint, so it never raises.
    """
    try:
        with Image.open(src, formats=_ALLOWED_FORMATS) as image:
            return _gps_from_exif(image.getexif())
    except Exception:  # noqa: BLE001 - any failure just means "no location known"
        return None


def check_header(src: BinaryIO, max_pixels: int) -> tuple[float, float] | None:
    """For intake, before a photo is stored: refuse more than `max_pixels` from the header, before anything
    is decoded (a tiny file can declare 30000x30000 pixels and ask the worker for gigabytes), and read
    the GPS hint from the same reading. Raises PhotoRejected("decompression_bomb", ...); None when the
    header or its EXIF cannot be read (the worker decides about such a photo). Leaves `src` at offset 0."""
    try:
        return _read_header(src, max_pixels, _ALLOWED_FORMATS)
    except PhotoRejected as rejected:
        if rejected.reason_code == "decompression_bomb":
            raise
        return None
    finally:
        src.seek(0)


class HeaderIncomplete(Exception):
    """The first bytes of a photo end before its header does: check the whole file instead."""


def check_jpeg_start(start: bytes | bytearray, max_pixels: int, *, whole: bool) -> tuple[float, float] | None:
    """`check_header` for a JPEG from its first bytes, held in memory while the rest is written: no reading
    back from storage. Pillow reads a JPEG's header, EXIF included, up to its first scan and no further,
    so when `start` holds that much the answer is the whole file's. Raises PhotoRejected as check_header;
    HeaderIncomplete when `start` is not enough to say (unless it is the `whole` photo)."""
    frame = jpeg_frame(start)
    if frame is not None:
        width, height, exif_segment = frame
        # A plainly formed header is read without Pillow's parser; everything else, refusals included
        # (their message carries Pillow's words), goes the way it always went.
        if width * height <= _limit(max_pixels):
            if exif_segment is None:
                return None
            exif = _exif_as_pillow_opens_it(exif_segment)
            if exif is not None:
                return _gps_from_exif(exif)
    return _check_jpeg_start_with_pillow(start, max_pixels, whole=whole)


def _check_jpeg_start_with_pillow(
    start: bytes | bytearray, max_pixels: int, *, whole: bool
) -> tuple[float, float] | None:
    try:
        return _read_header(io.BytesIO(start), max_pixels, ("JPEG",))
    except PhotoRejected as rejected:
        if rejected.reason_code == "decompression_bomb":
            raise
        if whole:
            return None
        raise HeaderIncomplete from rejected
    except Exception as exc:  # whatever cut-off bytes do to the reader, the whole file decides
        raise HeaderIncomplete from exc


def _exif_as_pillow_opens_it(segment: bytes) -> Image.Exif | None:
    """The EXIF Pillow's JPEG opener would hold, or None when its opening could go another way: it loads
    the EXIF and reads the resolution from it while opening (JpegImageFile._read_dpi_from_exif), where odd
    values escape as errors. The same steps are taken here only to see whether they raise."""
    exif = Image.Exif()
    try:
        exif.load(segment)
    except Exception:  # noqa: BLE001 - Pillow may open the photo with half of it, or not at all
        return None
    try:
        resolution_unit = exif[Base.ResolutionUnit]
        x_resolution = exif[Base.XResolution]
        try:
            dpi = float(x_resolution[0]) / x_resolution[1]
        except TypeError:
            dpi = x_resolution
        if not math.isnan(dpi) and resolution_unit == 3:
            dpi *= 2.54
    except KeyError:  # no resolution: the common case, which Pillow passes over as well
        return exif
    except Exception:  # noqa: BLE001 - whatever Pillow makes of it, its own reading decides
        return None
    return exif


def _read_header(src: BinaryIO, max_pixels: int, formats: tuple[str, ...]) -> tuple[float, float] | None:
    """The GPS hint, or None without readable EXIF; PhotoRejected "decompression_bomb" or "unreadable"."""
    with _pillow_failures_rejected(max_pixels), Image.open(src, formats=formats) as image:
        _refuse_bombs(image.size, max_pixels)
        if image.format == "PNG" and "exif" not in image.info:
            # Pillow would decode every pixel looking for EXIF after them: not on the request path.
            return None
        try:
            return _gps_from_exif(image.getexif())
        except Exception:  # noqa: BLE001 - a photo without readable EXIF is still a photo
            return None


@contextmanager
def _pillow_failures_rejected(max_pixels: int) -> Iterator[None]:
    try:
        yield
    # The warning only arrives as an exception if someone made warnings errors;
    # _refuse_bombs applies the same limit without touching the (process-wide,
    # not thread-safe) warning filters. Pillow's own words name its limit, not ours.
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        declared = re.search(r"\((\d+) pixels\)", str(error))  # the size is in Pillow's words only
        pixels = f"is {declared[1]} pixels" if declared else "has more pixels"
        raise PhotoRejected(
            "decompression_bomb", f"photo {pixels}, more than the {_limit(max_pixels)} allowed"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        # OSError covers UnidentifiedImageError and "image file is truncated".
        raise PhotoRejected("unreadable", f"photo could not be read: {error}") from error


def _limit(max_pixels: int) -> int:
    return min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


def _refuse_bombs(size: tuple[int, int], max_pixels: int) -> None:
    # Pillow merely warns between MAX_IMAGE_PIXELS and twice that; for uploads
    # from strangers that range must be refused as firmly as the error above it.
    limit = _limit(max_pixels)
    width, height = size
    if width * height > limit:
        raise PhotoRejected(
            "decompression_bomb",
            f"photo is {width}x{height} pixels, more than the {limit} allowed",
        )


def _gps_from_exif(exif: Image.Exif) -> tuple[float, float] | None:
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        latitude = _degrees(gps.get(GPS.GPSLatitude), gps.get(GPS.GPSLatitudeRef), "NS")
        longitude = _degrees(gps.get(GPS.GPSLongitude), gps.get(GPS.GPSLongitudeRef), "EW")
    except Exception:  # noqa: BLE001 - malformed GPS blocks are common; a photo without location is fine
        return None
    if latitude is None or longitude is None:
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    if latitude == 0 and longitude == 0:  # "Null Island": a receiver with no fix
        return None
    return (latitude, longitude)


def _degrees(dms: object, ref: object, positive_negative: str) -> float | None:
    """Degrees/minutes/seconds rationals plus an N/S or E/W reference → signed decimal degrees."""
    if not isinstance(dms, tuple) or not 1 <= len(dms) <= 3:
        return None
    parts = [float(part) for part in dms]  # IFDRational; 0-denominators become nan
    if not all(math.isfinite(part) and part >= 0 for part in parts):
        return None
    degrees = sum(part / 60**index for index, part in enumerate(parts))
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", "replace")
    ref = str(ref or "").strip("\x00 ").upper()
    positive, negative = positive_negative[0], positive_negative[1]
    if ref not in (positive, negative):  # a missing reference gives no location
        return None
    return -degrees if ref == negative else degrees


def _taken_at_from_exif(exif: Image.Exif) -> datetime | None:
    try:
        details = exif.get_ifd(ExifTags.IFD.Exif)
        text = details.get(Base.DateTimeOriginal) or exif.get(Base.DateTimeOriginal)
        offset = details.get(Base.OffsetTimeOriginal)
        taken_at = datetime.strptime(str(text).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
    except Exception:  # noqa: BLE001 - absent, or the "0000:00:00 00:00:00" some cameras write
        return None
    return taken_at.replace(tzinfo=_zone_from_offset(offset) or CAMERA_CLOCK_ZONE)


def _zone_from_offset(offset: object) -> tzinfo | None:
    try:  # "+07:00" style, as written by phones
        return datetime.strptime(str(offset).strip("\x00 "), "%z").tzinfo
    except ValueError:
        return None


def _to_plain_srgb(image: Image.Image) -> Image.Image:
    """RGB pixels in sRGB with no metadata at all: alpha flattened onto white."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, "white")
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        rgb = image.convert("RGB")
    icc_profile = image.info.get("icc_profile")
    if icc_profile:
        # Phones often shoot in Display P3; we drop the profile with the rest of
        # the metadata, so convert the pixels first or colours come out dull.
        try:
            source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            converted = ImageCms.profileToProfile(rgb, source_profile, _SRGB)
            if converted is not None:  # None only when converting in place
                rgb = converted
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or non-RGB profile: keep the pixels as they are
    # convert() copies info (EXIF, XMP, comments, ICC); the JPEG encoder would
    # write some of it back, so the output starts from nothing.
    rgb.info.clear()
    return rgb


def _write_jpeg_atomically(image: Image.Image, dest: Path, *, quality: int) -> None:
    # A temp file in the same directory, then os.replace: readers and a crash
    # see either the old file or the complete new one, never half a JPEG.
    dest.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            image.save(temp_file, format="JPEG", quality=quality, optimize=True)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, dest)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
