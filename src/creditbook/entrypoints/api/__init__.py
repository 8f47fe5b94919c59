"""entrypoints api."""
