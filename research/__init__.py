"""Research: backtests that replay sessions through the same library code the actors run."""
