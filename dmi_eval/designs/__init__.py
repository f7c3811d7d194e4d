"""Designs: one module per design, each ``Model(data, *, options).fit() -> Results``."""
