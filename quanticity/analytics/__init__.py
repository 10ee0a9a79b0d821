"""Numerical analytics of the platform: option pricing (:mod:`.bsm`) and per-symbol features.

Pure numpy/numba, no Ray and no I/O, so the same code prices options in the simulator, in the
live actors and in research notebooks, and is unit-testable in isolation.
"""
