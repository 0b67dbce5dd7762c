"""A user's monitoring feature for tests: the peak level of the prepared clip."""

from __future__ import annotations

import numpy as np


def peak(x, sr: int) -> float:
    return float(np.max(np.abs(x)))
