"""Settings for the whole suite.

Hypothesis: no per-example deadline. Its default (200 ms) measures wall time, so on a loaded machine (two
cores shared with real servers started by other tests) a slow example fails a property that holds; what
a property test asserts is correctness, and speed is measured in bench/, never asserted in tests.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("postier", deadline=None)
settings.load_profile("postier")
