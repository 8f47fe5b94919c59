"""adapters providers."""
