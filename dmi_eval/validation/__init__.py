"""Reproduce published results on the reference datasets.

Each ``*_cases`` module exposes ``CASES``: a mapping ``case name -> function``;
a function takes the reference folder and returns :class:`Check` rows. The
runner writes ``results/validation.csv`` (``case, quantity, value, published,
tolerance, passed``) and ``appendix/validation.md``.
"""
