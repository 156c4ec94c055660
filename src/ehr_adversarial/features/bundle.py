"""The tensor bundle: what every feature set, split and generator exchanges.

A bundle maps names to arrays: X, mask, delta (N, hours, F) float32; static (N, S); y, record_id,
group (N,); synthetic bundles may add codes/code_names. See docs/features.md.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")
TensorBundle = dict[str, np.ndarray]
