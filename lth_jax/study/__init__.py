"""A study: what it computes, how it runs, and the directory that keeps it.

config · constructor (``make_study``) · from_config · definition (``Study``) · imp
(the level loop) · store · checkpoint · artifacts · results · workdir · tables ·
progress.
"""
