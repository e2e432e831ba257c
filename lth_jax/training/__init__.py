"""Training a state (one network, or a stacked group) to a final step.

fit (the one loop, with hooks) · segment (evaluation periods in one compiled
call) · curve (a run's evaluations on the host) · parallel (stack, pad, shard)
· distributed (several processes).
"""
