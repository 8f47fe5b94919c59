"""entrypoints cli."""
