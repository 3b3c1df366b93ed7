"""Reading a multipart/form-data body as it arrives: photos straight into storage, text fields capped.

There is no spooled copy. Each photo part is recognised by its first bytes, hashed and capped while its
chunks come in, and written into its staging place in storage (`PhotoStorage.begin_save`: for the local
folder its own path; for an object store a local file, uploaded once complete) in batches, in a thread.
Once the part ends, its header (pixel count, GPS hint) is read before it is kept: a JPEG's from a copy of
its first bytes, on the event loop; any other photo's, or a JPEG's that runs past those bytes, from what
was written, in the thread that finishes the file. The thread's work is kept to the bytes (hashing,
writing): Python code there holds the GIL the event loop waits for.

A photo over the size limit stops the reading at once (413). A photo refused for what it is (not an
image we take: 415; too many pixels: 413) does not: the rest of the body is read so that the caller can
answer a field error first, as before (`Form.raise_refused_photo`), and nothing more is stored. Whatever
fails, storage keeps nothing of this request: the part being written is removed here, and the photos
already staged are in the caller's `staged` list for its clean-up.
"""

import codecs
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import anyio
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from service.errors import AppError, PayloadTooLarge, UnsupportedMediaType
from service.photos.content import SNIFF_BYTES, extension_for, sniff_image_type
from service.photos.processing import HeaderIncomplete, PhotoRejected, check_header, check_jpeg_start
from service.photos.storage import PartialSave, PhotoStorage, TooLarge, photo_key
from service.random_ids import uuid4
from service.reports.service import StagedPhoto
from service.settings import Settings

# A photo's bytes go to disk in batches of about this size: few thread hand-offs, little held in memory.
WRITE_BATCH_BYTES = 512 * 1024
# A JPEG's first bytes copied for its header: a phone's EXIF block (at most 64 KB) and the tables before
# the first scan fit, so the header is read without reading the file back.
HEADER_BYTES = 128 * 1024
MAX_FIELD_BYTES = 64 * 1024


class FormInvalid(Exception):
    """The body is not a form we take; `message` says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class TooManyFiles(FormInvalid):
    pass


@dataclass(frozen=True)
class FormRules:
    file_field: str
    max_files: int
    max_fields: int
    # A file sent in another field: the error to answer, or None to skip it.
    stray_file: Callable[[str], Exception] | None = None
    max_field_bytes: int = MAX_FIELD_BYTES


@dataclass
class Form:
    fields: list[tuple[str, str]] = field(default_factory=list)
    refused_photo: AppError | None = None

    def raise_refused_photo(self) -> None:
        if self.refused_photo is not None:
            raise self.refused_photo


def _decode(raw: bytes | bytearray, charset: str, *, lenient: bool = False) -> str:
    """A field's text; bytes the form's charset refuses are a refused form (stored, they would be
    garbled text), except in a file name, which is only a label."""
    try:
        return raw.decode(charset)
    except (ValueError, LookupError) as exc:  # any codec's refusal (punycode raises a bare UnicodeError)
        if lenient:
            return raw.decode(charset, errors="replace") if isinstance(exc, UnicodeDecodeError) else "photo"
        raise FormInvalid(f"A form field is not valid {charset} text.") from exc


@dataclass(frozen=True)
class _Header:
    gps: tuple[float, float] | None


class _IncomingPhoto:
    """One photo part: its chunks held until its first bytes tell its type, then batches for storage."""

    def __init__(self, filename: str, storage: PhotoStorage, settings: Settings):
        self.filename = filename or "photo"
        self.storage, self.settings = storage, settings
        self.size = 0
        # A copy of its first bytes: for its type, and for a JPEG's header (None once of no more use).
        self.head: bytearray | None = bytearray()
        self.pending: list[bytes | memoryview] = []
        self.pending_bytes = 0
        self.id: UUID | None = None
        self.content_type = ""
        self.save: PartialSave | None = None
        self.queued = False  # in the reader's list of photos with bytes to store
        self.ended = False
        # Read from `head` at the part's end: the GPS hint or the refusal; None when the file must say.
        self.header: _Header | PhotoRejected | None = None

    def too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(detail=f"{self.filename}: a photo may be at most {self.settings.max_photo_bytes} bytes.")

    def count(self, size: int) -> None:
        self.size += size
        if self.size > self.settings.max_photo_bytes:
            raise self.too_large()

    def take(self, data: bytes | memoryview) -> UnsupportedMediaType | None:
        """Keep a chunk; returns the refusal once the first bytes show the part is no image we take."""
        self.pending.append(data)
        self.pending_bytes += len(data)
        head = self.head
        if head is None or len(head) >= HEADER_BYTES:
            return None
        head += memoryview(data)[: HEADER_BYTES - len(head)]
        return self.recognise() if self.save is None and len(head) >= SNIFF_BYTES else None

    def recognise(self) -> UnsupportedMediaType | None:
        assert self.head is not None
        content_type = sniff_image_type(bytes(self.head[:SNIFF_BYTES]))
        if content_type is None:
            return UnsupportedMediaType(detail=f"{self.filename} is not a JPEG, PNG, WebP or HEIC image.")
        self.id, self.content_type = uuid4(), content_type
        key = photo_key("originals", self.id, extension_for(content_type), datetime.now(UTC))
        self.save = self.storage.begin_save(key, max_bytes=self.settings.max_photo_bytes, content_type=content_type)
        if content_type != "image/jpeg":
            self.head = None
        return None

    def read_header(self) -> None:
        """At the part's end, on the event loop: a JPEG's header from the copy of its first bytes (or all of
        them); when they do not say, `header` stays None and the header is read from the file."""
        head, self.head = self.head, None
        if head is None:
            return
        try:
            gps = check_jpeg_start(head, self.settings.max_photo_pixels, whole=len(head) == self.size)
        except PhotoRejected as exc:
            self.header = exc
        except HeaderIncomplete:
            return
        else:
            self.header = _Header(gps)

    def too_many_pixels(self, rejected: PhotoRejected) -> PayloadTooLarge:
        return PayloadTooLarge("photo_dimensions_too_large", f"{self.filename}: {rejected.message}")

    def write_pending(self) -> None:
        """Runs in a thread."""
        assert self.save is not None
        batch, self.pending, self.pending_bytes = self.pending, [], 0
        self.save.write(batch)

    def finish(self) -> StagedPhoto | AppError:
        """Runs in a thread: the last bytes, the header check unless read already (before anything is
        published), the publishing."""
        assert self.save is not None and self.id is not None
        try:
            if isinstance(self.header, PhotoRejected):
                self.pending, self.pending_bytes = [], 0
                self.save.discard()
                return self.too_many_pixels(self.header)
            self.write_pending()
            if self.header is not None:
                gps = self.header.gps
            else:
                try:  # a small file may declare gigapixels; the GPS hint comes from the same reading
                    with self.save.written() as written:
                        gps = check_header(written, self.settings.max_photo_pixels)
                except PhotoRejected as exc:
                    self.save.discard()
                    return self.too_many_pixels(exc)
            stored = self.save.finish()
        except TooLarge as exc:
            raise self.too_large() from exc
        return StagedPhoto(
            id=self.id,
            key=stored.key,
            content_type=self.content_type,
            size_bytes=stored.size_bytes,
            gps=gps,
        )


class _FormReader:
    """The parser's callbacks (plain functions, called while a chunk is parsed) and the I/O they leave to do."""

    def __init__(self, storage: PhotoStorage, settings: Settings, rules: FormRules, charset: str):
        self.storage, self.settings, self.rules, self.charset = storage, settings, rules, charset
        self.form = Form()
        self.files = self.field_count = 0
        self.header_name = self.header_value = b""
        self.disposition = b""
        self.name = ""
        self.text: bytearray | None = None  # the value of a text part being read
        self.photo: _IncomingPhoto | None = None  # the photo part being read
        self.skipped = 0  # bytes of a file part that is read but not kept; -1 when none is being read
        self.photos: list[_IncomingPhoto] = []  # photos with bytes to store (oldest first)
        self.publishing: list[str] = []  # keys of photos being published (a failure must delete them too)

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.disposition, self.text, self.photo, self.skipped = b"", None, None, -1

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name = self.header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise FormInvalid('The Content-Disposition header field "name" must be provided.')
        self.name = _decode(options[b"name"], self.charset)
        if b"filename" not in options:
            self.field_count += 1
            if self.field_count > self.rules.max_fields:
                raise FormInvalid(f"Too many fields. Maximum number of fields is {self.rules.max_fields}.")
            self.text = bytearray()
        elif self.name != self.rules.file_field:
            if self.rules.stray_file is not None:
                raise self.rules.stray_file(self.name)
            self.skipped = 0
        else:
            self.files += 1
            if self.files > self.rules.max_files:
                raise TooManyFiles(f"At most {self.rules.max_files} photos per report.")
            if self.form.refused_photo is None:
                self.photo = _IncomingPhoto(
                    _decode(options[b"filename"], self.charset, lenient=True), self.storage, self.settings
                )
            else:  # the request is refused already: nothing more is stored
                self.skipped = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.text is not None:
            if len(self.text) + end - start > self.rules.max_field_bytes:
                raise FormInvalid(f"Part exceeded maximum size of {self.rules.max_field_bytes // 1024}KB.")
            self.text += data[start:end]
        elif self.photo is not None:
            self.photo.count(end - start)
            chunk = data if start == 0 and end == len(data) else memoryview(data)[start:end]
            refused = self.photo.take(chunk)
            if refused is not None:
                self.refuse(refused)
            elif self.photo.save is not None and not self.photo.queued:
                self.photo.queued = True
                self.photos.append(self.photo)
        elif self.skipped >= 0:
            self.skipped += end - start
            if self.skipped > self.settings.max_photo_bytes:
                raise PayloadTooLarge(detail=f"A photo may be at most {self.settings.max_photo_bytes} bytes.")

    def on_part_end(self) -> None:
        if self.text is not None:
            self.form.fields.append((self.name, _decode(self.text, self.charset)))
        elif self.photo is not None:
            if self.photo.save is None:  # shorter than the bytes its type is told by
                refused = self.photo.recognise()
                if refused is not None:
                    self.refuse(refused)
                    return
                self.photo.queued = True
                self.photos.append(self.photo)
            self.photo.read_header()
            self.photo.ended = True
        self.text, self.photo = None, None

    def refuse(self, error: AppError) -> None:
        if self.form.refused_photo is None:
            self.form.refused_photo = error
        if self.photo is not None:
            self.skipped, self.photo = self.photo.size, None

    async def store(self, staged: list[StagedPhoto]) -> None:
        """The disk work the last chunk left: full batches written, ended photos checked and published."""
        while self.photos:
            photo = self.photos[0]
            if photo.ended:
                assert photo.save is not None
                self.publishing.append(photo.save.key)
                result = await anyio.to_thread.run_sync(photo.finish)
                self.publishing.remove(photo.save.key)
                self.photos.pop(0)
                if isinstance(result, StagedPhoto):
                    staged.append(result)
                else:
                    self.refuse(result)
                    self.discard_unfinished()
            elif photo.pending_bytes >= WRITE_BATCH_BYTES:
                await anyio.to_thread.run_sync(photo.write_pending)
                return
            else:
                return

    def discard_unfinished(self) -> None:
        """Blocks (unlinks, or an object store's deletes): what a failed or refused request had begun to store."""
        for photo in self.photos:
            if photo.save is not None:
                photo.save.discard()
        self.photos.clear()
        if self.photo is not None and self.photo.save is not None:
            self.photo.save.discard()
        for key in self.publishing:
            self.storage.delete(key)
        self.publishing.clear()


def _parser(request: Request, reader_for: Callable[[str], _FormReader]) -> tuple[MultipartParser, _FormReader]:
    _, params = parse_options_header(request.headers.get("content-type", ""))
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:  # RFC 7578 names no charset parameter: an unknown one means the usual UTF-8
        charset = "utf-8"
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormInvalid("Missing boundary in multipart.")
    reader = reader_for(charset)
    try:
        return MultipartParser(boundary, reader.callbacks()), reader  # type: ignore[arg-type]
    except FormParserError as exc:
        raise FormInvalid("Invalid multipart data.") from exc


async def read_form(
    request: Request, storage: PhotoStorage, settings: Settings, rules: FormRules, staged: list[StagedPhoto]
) -> Form:
    """Parse the body as it arrives; photos are appended to `staged` once stored, so the caller can clean up.

    Raises FormInvalid (the caller words it), a domain error (413, a stray file) or ClientDisconnect."""
    parser, reader = _parser(request, lambda charset: _FormReader(storage, settings, rules, charset))
    try:
        async for chunk in request.stream():
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise FormInvalid("Invalid multipart data.") from exc
            if reader.photos:
                await reader.store(staged)
        if parser.state != MultipartState.END:
            raise FormInvalid("Invalid multipart data: the body ends before its closing boundary.")
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(reader.discard_unfinished)
        raise
    return reader.form
