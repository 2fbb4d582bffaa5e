"""The trivial participant model: background everywhere, no computation at all.

(baselines/trivial.py holds the same function for in-process use, but imports segloop's records
for its harness-side helpers, which a participant image does not have.)
"""

import numpy as np


def predict(case, request):
    return np.zeros(case.shape, dtype=np.uint8)
