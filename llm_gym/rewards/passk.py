"""pass@k: the chance that at least one of k samples is correct, estimated without bias.

Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1): with ``n`` samples
of which ``c`` are correct, ``pass@k = 1 - C(n-c, k) / C(n, k)``. The binomials overflow for
large ``n``; the product form ``1 - prod_{i=n-c+1}^{n} (1 - k/i)`` is stable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate from ``n`` samples with ``c`` correct.

    Args:
        n: samples drawn for the item (``n >= 1``).
        c: correct samples (``0 <= c <= n``).
        k: budget (``1 <= k <= n``).

    Example:
        >>> round(pass_at_k(10, 3, 1), 6)
        0.3
        >>> round(pass_at_k(10, 3, 5), 4)
        0.9167
        >>> pass_at_k(10, 0, 5), pass_at_k(5, 1, 5)
        (0.0, 1.0)
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must lie in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, n={n}] (draw at least k samples per item), got {k}")
    if n - c < k:
        return 1.0  # every k-subset contains a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over items given as ``(n, c)`` pairs.

    Example:
        >>> mean_pass_at_k([(4, 0), (4, 4)], k=2)
        0.5
    """
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no items to average pass@k over")
    return sum(values) / len(values)
