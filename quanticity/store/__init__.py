"""State in Redis: the embedded server, connections, and the atomic operations the actors share."""
