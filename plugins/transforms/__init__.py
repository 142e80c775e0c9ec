"""Built-in transforms (each module registers itself)."""
