"""A JPEG's frame size and EXIF segment from its first bytes, without Pillow's JPEG parser.

Intake checks every uploaded JPEG's header on the event loop, and Pillow's opener parses each segment
before the first scan in Python (quantisation tables, every APP segment) when intake only needs the
size and the EXIF. This walk reads segment lengths and nothing else. It mirrors Pillow's reading
(JpegImagePlugin) and answers only when the header is plainly formed; for anything odd it answers None
and the caller asks Pillow, so the answer is the same either way.
"""

import struct

_SOI = b"\xff\xd8\xff"
_START_OF_SCAN = 0xDA
# Pillow takes the size from any of these, DHP (0xDE) included.
_START_OF_FRAME = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xDE))
# Markers without a length that Pillow steps over: JPG, RSTn, SOI, EOI, JPGn.
_STANDALONE = frozenset((0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)))
# Segments Pillow skips by their length (DHT, DAC, DNL, DRI, EXP) or stores without parsing (COM).
_SKIPPED = frozenset((0xC4, 0xCC, 0xDC, 0xDD, 0xDF, 0xFE))
_APP0, _APP1, _APP2, _APP13, _APP14, _APP15 = 0xE0, 0xE1, 0xE2, 0xED, 0xEE, 0xEF
_DQT = 0xDB


def jpeg_frame(start: bytes | bytearray) -> tuple[int, int, bytes | None] | None:
    """(width, height, EXIF segment as Pillow would load it, or None) from the segments before the
    first scan; None whenever Pillow might read `start` differently (or not at all), including when
    the scan does not begin within `start`."""
    if not start.startswith(_SOI):
        return None
    size: tuple[int, int] | None = None
    exif: bytes | None = None
    position = 2
    while position + 1 < len(start):
        if start[position] != 0xFF:
            return None  # junk between segments: Pillow steps over it byte by byte
        marker = start[position + 1]
        if marker == 0xFF:  # a fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        if position + 4 > len(start):
            return None
        (length,) = struct.unpack_from(">H", start, position + 2)
        end = position + 2 + length
        if length < 2 or end > len(start):
            return None
        segment = bytes(start[position + 4 : end])
        if marker == _START_OF_SCAN:
            return (*size, exif) if size is not None else None
        if marker in _START_OF_FRAME:
            if size is not None:
                return None
            size = _frame_size(segment)
            if size is None:
                return None
        elif marker == _APP1 and segment.startswith(b"Exif\x00\x00"):
            exif = segment if exif is None else exif + segment[6:]  # Pillow joins them so
        elif marker == _DQT:
            if not _quantisation_tables_fit(segment):
                return None
        elif _APP0 <= marker <= _APP15:
            if not _app_segment_is_plain(marker, segment):
                return None
        elif marker not in _SKIPPED:
            return None  # 0xFF00 or a reserved marker: Pillow skips or refuses it
        position = end
    return None


def _frame_size(segment: bytes) -> tuple[int, int] | None:
    """(width, height) when Pillow accepts the frame: 8-bit samples, 1, 3 or 4 components, whole
    component entries and no zero dimension."""
    if len(segment) < 6 or (len(segment) - 6) % 3 or segment[0] != 8 or segment[5] not in (1, 3, 4):
        return None
    height, width = struct.unpack_from(">HH", segment, 1)
    return (width, height) if width and height else None


def _quantisation_tables_fit(segment: bytes) -> bool:
    """Pillow refuses a DQT segment whose tables (8- or 16-bit) do not fill it exactly."""
    offset = 0
    while offset < len(segment):
        offset += 1 + (64 if segment[offset] < 16 else 128)
    return offset == len(segment)


def _app_segment_is_plain(marker: int, segment: bytes) -> bool:
    """False for the APP segments Pillow parses in ways that can fail or change the image it opens:
    short JFIF or Adobe headers, Photoshop resources, an MPF index (which makes it an MPO), a short
    ICC profile chunk."""
    if marker == _APP0 and segment.startswith(b"JFIF"):
        return len(segment) >= 7
    if marker == _APP14 and segment.startswith(b"Adobe"):
        return len(segment) >= 7
    if marker == _APP13 and segment.startswith(b"Photoshop 3.0\x00"):
        return False
    if marker == _APP2 and segment.startswith(b"MPF\x00"):
        return False
    if marker == _APP2 and segment.startswith(b"ICC_PROFILE\x00"):
        return len(segment) >= 14
    return True
