"""The one shape of a progress report, for every piece of work that advances in counted units."""

from __future__ import annotations

from collections.abc import Callable

ProgressCallback = Callable[[int, int], None]
"""progress(done, total), called each time the work advances: denoising steps of a batch
(`serving.engine`), bytes of a transfer (`shared.registry_client`). A caller that reports more,
such as the time since its request arrived, closes over it rather than widening the shape."""
