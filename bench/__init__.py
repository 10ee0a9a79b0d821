"""Benchmarks: each module's ``run()`` returns a result dict; ``python -m bench`` prints and saves them."""
