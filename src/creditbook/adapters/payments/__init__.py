"""adapters payments."""
