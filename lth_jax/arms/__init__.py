"""Arms: what a pruned level's run starts from, one registry, one signature.

controls (the ticket and its controls) · at_init (masks chosen early) · scores
(the scores that choose them) · supermask.
"""
