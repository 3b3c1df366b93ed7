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
        self._lock = threading.Lock()
        self._pid = -1
        self._pool = b""
        self._next = 0

    def uuid4(self) -> UUID:
        with self._lock:
            if self._pid != os.getpid() or self._next >= len(self._pool):  # a forked child draws its own
                self._pid, self._pool, self._next = os.getpid(), os.urandom(16 * _IDS_PER_DRAW), 0
            start = self._next
            self._next += 16
            return UUID(bytes=self._pool[start : start + 16], version=4)


uuid4 = _RandomIds().uuid4
