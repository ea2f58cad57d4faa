# The `evaluate` module lives in `pgr.py` next to this file; load it with
# `csl_hf.metrics.load_pgr_metric()` or `evaluate.load(<path of this folder>)`.
# This file only makes the folder a package so setuptools ships it; it imports nothing.
