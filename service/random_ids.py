"""Version-4 UUIDs for rows created on the request path, without a system call for each.

`uuid.uuid4()` asks the kernel for 16 random bytes every time, and `os.urandom` gives up the GIL for the
call: on the event loop's thread that means waiting to get it back from a worker thread (one writing a
photo, say) at every new id. Here the same kernel randomness is drawn 4 KB at a time, per process.
"""

import os
import threading
from uuid import UUID

_IDS_PER_DRAW = 256


class _RandomIds:
    def __init__(self) -> None:
        self._forget()
        # A forked child draws its own (as service.edge's request ids do), without a getpid per id.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A new lock too: a fork while another thread held the old one would leave it held for good.
        self._lock, self._pool, self._next = threading.Lock(), b"", 0

    def uuid4(self) -> UUID:
        with self._lock:
            if self._next >= len(self._pool):
                self._pool, self._next = os.urandom(16 * _IDS_PER_DRAW), 0
            start = self._next
            self._next += 16
            return UUID(bytes=self._pool[start : start + 16], version=4)


uuid4 = _RandomIds().uuid4
