"""Built-in schedules (each module registers itself)."""
