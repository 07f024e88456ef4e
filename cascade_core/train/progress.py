"""A training progress bar (tqdm on stderr) with the smoothed loss and images per second."""
from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


class Progress:
    """Tracks steps done, an exponential moving average of the loss and the image throughput."""

    def __init__(self, total: int, start: int, batch_size: int, *, enabled: bool = True):
        self.total, self.start, self.batch_size = total, start, batch_size
        self.smoothed: float | None = None
        self.rate = 0.0
        self._t0 = time.perf_counter()
        self._last_log = self._t0
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
            except ImportError:
                pass
        self.enabled = enabled

    def update(self, step: int, loss: float) -> None:
        self.smoothed = loss if self.smoothed is None else 0.98 * self.smoothed + 0.02 * loss
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        self.rate = (step - self.start) * self.batch_size / elapsed
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{self.smoothed:.4f}", img_s=f"{self.rate:.1f}")
        now = time.perf_counter()
        if self.enabled and (now - self._last_log > 60 or step == self.total):
            self._last_log = now
            log.info("step %d/%d loss %.4f %.1f images/s", step, self.total, self.smoothed, self.rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
