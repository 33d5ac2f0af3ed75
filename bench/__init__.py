"""Benchmarks (`make bench`): the suite's generators against native tools, as ratios."""
