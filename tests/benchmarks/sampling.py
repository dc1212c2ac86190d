"""A background sampler for benchmarks: `with Sampler(...)` calls `sample()` in a thread until the block ends."""

from __future__ import annotations

import threading


class Sampler:
    """Calls `sample()` right away and then every `every` seconds (0: back to back) until the `with`
    block ends."""

    def __init__(self, every: float = 0.0) -> None:
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every):
                return

    def sample(self) -> None:
        raise NotImplementedError
