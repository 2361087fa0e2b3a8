"""Running a local server in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
from collections.abc import Callable


def serve_until_interrupted(serve: Callable[[], object], stop: Callable[[], object],
                            banner: str) -> None:  # fmt: skip
    """Print ``banner``, run ``serve`` until Ctrl-C (SIGINT), then ``stop``.

    A process started in the background of a script inherits SIGINT ignored; Python's
    handler is set again before the banner, so a caller who waits for it can interrupt.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    print(banner, flush=True)
    try:
        serve()
    except KeyboardInterrupt:
        pass
    finally:
        stop()
