"""Recognise uploaded photos by their first bytes, never by name or declared type.

Citizens' phones and browsers send whatever Content-Type and file name they like,
so the only type we trust is the one the bytes themselves announce.
"""

SNIFF_BYTES = 32
"""How many leading bytes `sniff_image_type` needs to decide."""

_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/webp": ".webp",
    "image/heic": ".heic",
}

# Major brands of HEIF files carrying HEVC (what iPhones and most Android phones
# write). "mif1"/"msf1" are the generic HEIF brands, also used by AVIF files,
# which our decoder cannot read; see _is_avif.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def sniff_image_type(head: bytes) -> str | None:
    """Return the MIME type of a supported photo from its first SNIFF_BYTES bytes."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS and not _is_avif(head):
        return "image/heic"
    return None


def _is_avif(head: bytes) -> bool:
    # An AVIF file may declare the generic "mif1" as its major brand and name
    # "avif" only among the compatible brands that follow the minor version.
    box_size = int.from_bytes(head[:4], "big")
    box_end = min(len(head), box_size) if box_size >= 16 else len(head)
    compatible = head[16:box_end]
    brands = {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}
    return bool(brands & _AVIF_BRANDS)


def extension_for(mime: str) -> str:
    """File extension (with the dot) for a type returned by `sniff_image_type`."""
    try:
        return _EXTENSIONS[mime]
    except KeyError:
        raise ValueError(f"not a supported photo type: {mime!r}") from None
