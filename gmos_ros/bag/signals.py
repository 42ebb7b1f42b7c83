"""Signal handling while a bag is open, so an interrupted bag stays readable."""

from __future__ import annotations

import signal
import threading
from typing import Any


class _ClosingSignals:
    """Turn SIGINT/SIGTERM into KeyboardInterrupt while a bag is being written, so the
    `finally:` that closes the writer runs (metadata written, bag readable)."""

    def __enter__(self) -> _ClosingSignals:
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _StopOnSignal:
    """SIGINT/SIGTERM only set a flag while a recorder spins: raising inside a subscription
    callback (as `_ClosingSignals` does) could drop the message being written."""

    def __enter__(self) -> _StopOnSignal:
        self.signals = 0
        self._old: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.signals += 1

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
