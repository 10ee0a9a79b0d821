"""Distribution: turning confirmed fills into subscriber messages, delivered exactly once."""
