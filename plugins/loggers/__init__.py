"""Built-in loggers (each module registers itself)."""
