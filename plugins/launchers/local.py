"""The ``local`` launcher: every cell in this process, one after another (the default)."""
from __future__ import annotations

import traceback

from rich.progress import Progress

from toolkit import registry, sweep
from toolkit.errors import Interrupted
from toolkit.launch.failures import error_summary, text_tail
from toolkit.launch.state import mark_finished_on_disk


@registry.register("launchers", "local")
class LocalLauncher:
    """Runs the cells in this process, one after another; a failing cell is recorded and the rest go on."""

    def __init__(self):
        pass

    def launch(self, spec, state, console) -> None:
        state.data.update(launcher="local", cluster=None)
        mark_finished_on_disk(spec, state)
        keys = list(dict.fromkeys(c.train_key for c in spec.cells))
        trained = [k for k in keys if state.entry("trainings", k)["state"] == "done"]
        console.print(f"sweep: {len(spec.cells)} cells, {len(keys)} trainings ({len(trained)} already trained) -> {spec.out}")
        failed_training: dict[str, str] = {}
        with Progress(console=console, transient=False) as bar:
            task = bar.add_task("sweep", total=len(spec.cells))
            for cell in spec.cells:
                bar.update(task, description=f"cell {cell.name}")
                if state.entry("cells", cell.name)["state"] != "done":
                    self._run(spec, state, cell, console, failed_training)
                bar.advance(task)

    @staticmethod
    def _run(spec, state, cell, console, failed_training) -> None:
        key = cell.train_key
        if key in failed_training:
            state.set("cells", cell.name, state="failed", error=f"training {key} failed:\n{failed_training[key]}")
            return
        if state.entry("trainings", key)["state"] != "done":
            state.set("trainings", key, state="running")
            try:
                sweep.run_training(spec, cell, console)
            except Interrupted:  # SIGINT/SIGTERM: the whole sweep stops (the training saved a checkpoint)
                raise
            except Exception:  # one broken training must not stop the other cells
                failed_training[key] = text_tail(traceback.format_exc())
                state.set("trainings", key, state="failed", error=failed_training[key])
                console.print(f"[red]training {key} failed:[/] {error_summary(failed_training[key])}")
                state.set("cells", cell.name, state="failed", error=f"training {key} failed:\n{failed_training[key]}")
                return
            state.set("trainings", key, state="done")
        state.set("cells", cell.name, state="running")
        try:
            sweep.run_cell(spec, cell, console)
        except Interrupted:
            raise
        except Exception:
            error = text_tail(traceback.format_exc())
            state.set("cells", cell.name, state="failed", error=error)
            console.print(f"[red]cell {cell.name} failed:[/] {error_summary(error)}")
            return
        state.set("cells", cell.name, state="done")
