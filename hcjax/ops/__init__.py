"""XLA kernels; each has a slow, obviously-correct reference beside the fast one."""
