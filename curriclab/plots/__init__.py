"""Plot helpers: each takes an `ax` (or makes a figure) and returns what it drew.

One module per notebook topic (e.g. `curriclab.plots.spl`); shared basics live in `basics`.
"""
