"""The risk gate (SPEC §8): the only path from a signal to the order router."""
