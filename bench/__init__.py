"""Side-by-side benchmarks: Postier vs Postfix vs aiosmtpd, in one run (``python -m bench.run``).

Not a test suite: the numbers are measured and reported, never asserted. See docs/benchmarks.md.
"""
