"""Random ids and codes for rows created on the request path, without a system call for each.

`uuid.uuid4()` asks the kernel for 16 random bytes every time (and `secrets` as many as it needs), and
`os.urandom` gives up the GIL for the call: on the event loop's thread that means waiting to get it back
from a worker thread (one writing a photo, say) at every new id. Here the same kernel randomness is
drawn 4 KB at a time, per process, and handed out in slices that are never given twice.
"""

import os
import threading
from uuid import UUID

_POOL_BYTES = 4096


class _RandomBytes:
    def __init__(self) -> None:
        self._forget()
        # A forked child draws its own (as service.edge's request ids do), without a getpid per id.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A new lock too: a fork while another thread held the old one would leave it held for good.
        self._lock, self._pool, self._next = threading.Lock(), b"", 0

    def take(self, size: int) -> bytes:
        """`size` fresh bytes of kernel randomness (at most the pool's size)."""
        with self._lock:
            start = self._next
            if start + size > len(self._pool):
                self._pool, start = os.urandom(_POOL_BYTES), 0  # the old pool's tail is dropped, never reused
            self._next = start + size
            return self._pool[start : start + size]


random_bytes = _RandomBytes().take

# What UUID(bytes=..., version=4) does to the bytes' number (the variant and version bits), done at once:
# its keyword checks cost more than the draw.
_VERSION_BITS = (0xC000 << 48) | (0xF000 << 64)
_VERSION_4 = (0x8000 << 48) | (4 << 76)


def uuid4() -> UUID:
    return UUID(int=int.from_bytes(random_bytes(16)) & ~_VERSION_BITS | _VERSION_4)
