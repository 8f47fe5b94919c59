"""adapters db."""
