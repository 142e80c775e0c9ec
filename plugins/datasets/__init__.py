"""Built-in datasets (each module registers itself)."""
