"""Built-in samplers (each module registers itself)."""
