"""The ledger rules: standard library only. Adapters depend on this, never the reverse."""
