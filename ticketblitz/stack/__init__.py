"""The embedded stack's parts: one module per server, the process plumbing they share and
the two helper programs run as ``python -m`` (``guardian``, ``stripe_emulator``).

:mod:`ticketblitz.embedded` assembles them into :class:`~ticketblitz.embedded.EmbeddedStack`.
This package imports nothing at import time, so the helper programs start fast.
"""
