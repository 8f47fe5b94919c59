"""adapters notify."""
