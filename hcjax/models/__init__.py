"""Flax linen modules only: pure functions of (params, inputs); no losses, no data."""
