"""One HTTP/1.1 connection over a plain socket, for tests where the bytes on the wire are the point: the
test sends each part when it likes (half a body, then nothing) and sees whether the server keeps the
connection or closes it."""

import socket
from urllib.parse import urlsplit


class RawConnection:
    def __init__(self, base: str, *, timeout: float = 10):
        parts = urlsplit(base)
        self.host = parts.netloc
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        self.buffer = b""

    def send_head(self, method: str, path: str, headers: dict, length: int) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {length}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> tuple[int, dict, bytes]:
        """The next answer: status, headers (lower-case names) and body."""
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._read()
        content, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, content

    def request(
        self, method: str, path: str, headers: dict | None = None, body: bytes = b""
    ) -> tuple[int, dict, bytes]:
        self.send_head(method, path, headers or {}, len(body))
        self.send(body)
        return self.answer()

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection before its answer was complete")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
