"""``nbws bench``: nbws measured side by side with baselines on this machine.

Absolute numbers drift between machines; the ratios are what to compare. Servers run in
their own processes (``nbws serve``, a plain tornado app, a raw TCP echo, a Jupyter server,
Jupyter kernels), and so do publishers where a scenario times publish to receipt; the
other clients run in this one. Everything is on loopback and bounded in count and time.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nbws bench`` (see :mod:`nbws.bench.runner`)."""
    from .runner import run

    return run(argv)
