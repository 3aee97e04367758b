"""A way for the API to wake an in-process worker at once instead of at its next poll."""

import threading

_event = threading.Event()


def wake_worker() -> None:
    """Tell the worker there is new work."""
    _event.set()


def wait_for_work(timeout: float) -> None:
    """Sleep until woken or until `timeout` seconds have passed."""
    _event.wait(timeout)
    _event.clear()
