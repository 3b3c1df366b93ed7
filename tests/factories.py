"""Small builders for request bodies and photos."""

import io

from PIL import Image

BEN_THANH_MARKET = (10.7725, 106.6980)


def report_body(**overrides) -> dict:
    body = {
        "description": "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay, rất tối và nguy hiểm.",
        "lat": BEN_THANH_MARKET[0],
        "lon": BEN_THANH_MARKET[1],
        "channel": "app",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


def jpeg_bytes(width: int = 64, height: int = 48, color: str = "orange", exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), color)
    image.save(buffer, "JPEG", **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def jpeg_with_gps(lat: float, lon: float) -> bytes:
    """A JPEG whose EXIF says where it was taken (and which phone took it)."""
    exif = Image.Exif()
    exif[0x010F] = "TestPhone Inc."  # Make
    exif[0x0110] = "Model X"  # Model

    def dms(value: float) -> tuple:
        value = abs(value)
        degrees = int(value)
        minutes = int((value - degrees) * 60)
        seconds = round(((value - degrees) * 60 - minutes) * 60, 4)
        return (float(degrees), float(minutes), float(seconds))

    gps = exif.get_ifd(0x8825)
    gps[1] = "N" if lat >= 0 else "S"
    gps[2] = dms(lat)
    gps[3] = "E" if lon >= 0 else "W"
    gps[4] = dms(lon)
    return jpeg_bytes(exif=exif.tobytes())
