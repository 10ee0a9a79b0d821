"""Ray actor shells: each holds a quanticity library object and routes messages; no logic here."""
