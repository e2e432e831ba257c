"""The pure core: one network, no I/O, usable line by line from a notebook.

masks (boolean pytrees beside params) · pools (the one ranking of pooled leaves) ·
plan (which weights are pruned, and the one counter of weights) · pruning ·
criteria · rewind · train (one network's state, step, evaluation and data order) ·
models · im2col · augment · connectivity (interpolation between two networks).
"""
