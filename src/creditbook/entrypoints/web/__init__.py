"""entrypoints web."""
