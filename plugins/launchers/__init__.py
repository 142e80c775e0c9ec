"""Built-in sweep launchers (each module registers itself): ``local`` and ``submitit``."""
