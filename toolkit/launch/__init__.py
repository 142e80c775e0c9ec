"""Sweep launchers: what runs a sweep's cells, and the state a sweep keeps on disk.

A launcher is any class registered under the ``launchers`` kind whose
keyword-only ``__init__`` arguments are its parameters (``--launcher-param
KEY=VALUE``, converted with the annotation) and which has
``launch(spec, state, console)``: run the cells of a :class:`~toolkit.sweep.SweepSpec`,
recording each training and cell in ``state``. Built-ins: ``local`` (in
process, one after another) and ``submitit`` (Slurm jobs, or local processes
without Slurm). A plugin adds one (e.g. Ray) with one file::

    @registry.register("launchers", "ray")
    class RayLauncher:
        def __init__(self, *, address: str = "auto"): ...
        def launch(self, spec, state, console): ...   # toolkit.launch.job.run_job per training and cell in a worker
        @staticmethod
        def job_alive(job_id, state: dict) -> bool | None: ...  # optional: --status tells lost jobs

The modules, one idea each:

- ``params``: the launcher named on the command line, built from ``--launcher-param`` strings
- ``state``: ``DIR/state.json`` and the finished files on disk that override it
- ``lock``: one submitting process per sweep folder
- ``job``: the function a launcher's job runs (a training or a cell)
- ``failures``: ``failures.json``, the failed-cells section of ``results.md``, log tails
- ``status``: the ``toolkit sweep --status`` table
"""
