"""Built-in backbones (each module registers itself)."""
