"""The seeded synthetic market (SPEC §11) the platform trades when it is not connected to a venue.

:mod:`.market` generates underlyings, L2 books, tapes and option chains that are bit-identical
for a given seed, so simulated sessions, tests and backtests are reproducible.
"""
