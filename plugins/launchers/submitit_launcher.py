"""The ``submitit`` launcher: every training and every cell is a submitit job.

On a Slurm cluster (``srun`` on PATH, or ``cluster=slurm``) the jobs are
sbatch jobs (one job array per submission round, so ``array_parallelism``
caps them); anywhere else submitit's local executor runs them as separate
processes, at most ``max_parallel`` at once. Job files and logs live in
``DIR/jobs/`` (``<job id>_0_log.out``: stdout and stderr together).

Order: one training job per distinct ``cell.train_key`` first
(``sweep.run_training``); a cell's job (``sweep.run_cell``) is submitted only
after its training job finished with ``train/<key>/run.json``, so no
training ever runs twice. The submitter records every job in
``DIR/state.json``; re-running the same command after it died adopts the
jobs still alive (a Slurm job by ``sacct``, a local one by its process id),
keeps finished cells and submits only what was lost or failed. Job files
the state never heard of (the submitter died right after submitting) are
recognised from their pickled arguments and adopted too.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import submitit
import torch

from toolkit import registry, sweep
from toolkit.errors import UserError
from toolkit.launch.failures import error_summary, log_tail, text_tail
from toolkit.launch.job import run_job
from toolkit.launch.state import mark_finished_on_disk

# --launcher-param name -> submitit's AutoExecutor parameter (generic names pass as they are).
SLURM_NAMES = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
               "constraint": "slurm_constraint", "array_parallelism": "slurm_array_parallelism"}
ALIVE_SLURM = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
               "REQUEUE_HOLD", "REQUEUE_FED", "UNKNOWN", "READY", "PREEMPTED"}
# submitit's job class of each cluster this launcher runs on: a recorded job id -> a Job to ask.
JOB_CLASSES = {"slurm": submitit.SlurmJob, "local": submitit.LocalJob}
# A cluster job's result files may show up on a shared file system a little after the job ends.
RESULT_GRACE_S = 30.0


@registry.register("launchers", "submitit")
class SubmititLauncher:
    """Each training and cell a submitit job: Slurm when available, else local processes (max_parallel at once)."""

    def __init__(self, *, cluster: str = "auto", max_parallel: int | None = None, partition: str | None = None,
                 gpus_per_node: int | None = None, cpus_per_task: int | None = None, mem_gb: float | None = None,
                 timeout_min: int = 24 * 60, account: str | None = None, array_parallelism: int | None = None,
                 qos: str | None = None, constraint: str | None = None, poll_s: float | None = None):
        if cluster not in ("auto", "local", "slurm"):
            raise ValueError(f"cluster must be auto, local or slurm, got {cluster!r}")
        for name, value in (("max_parallel", max_parallel), ("timeout_min", timeout_min),
                            ("array_parallelism", array_parallelism), ("poll_s", poll_s)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.cluster = cluster
        self.max_parallel = max_parallel
        self.poll_s = poll_s
        self.options = {"partition": partition, "gpus_per_node": gpus_per_node, "cpus_per_task": cpus_per_task,
                        "mem_gb": mem_gb, "timeout_min": timeout_min, "account": account,
                        "array_parallelism": array_parallelism, "qos": qos, "constraint": constraint}
        self._ended_at: dict[str, float] = {}
        self._submitted: set[str] = set()  # ids of the jobs this process submitted (its children, when local)

    # ------------------------------------------------------------------ the executor

    def make_executor(self, folder):
        """``submitit.AutoExecutor(folder)`` with this launcher's parameters applied (no job submitted)."""
        try:
            executor = submitit.AutoExecutor(folder=folder, cluster=None if self.cluster == "auto" else self.cluster)
        except RuntimeError as exc:  # cluster=slurm where there is no srun
            raise UserError(f"--launcher submitit: {exc}; use cluster=local or run where Slurm is installed") from exc
        params = {"name": f"sweep-{Path(folder).parent.name}", "stderr_to_stdout": True}
        for name, value in self.options.items():
            if value is not None:
                params[SLURM_NAMES.get(name, name)] = value
        if executor.cluster == "local" and self.options["gpus_per_node"] is None:
            # the local executor hides every GPU unless asked for some: share the visible ones
            params["gpus_per_node"] = torch.cuda.device_count()
        executor.update_parameters(**params)
        return executor

    def parallel_limit(self, cluster: str) -> int | None:
        return self.max_parallel or (2 if cluster == "local" else None)

    # ------------------------------------------------------------------ launching

    def launch(self, spec, state, console) -> None:
        spec = absolute(spec)  # jobs may start elsewhere (Slurm nodes): no path may depend on the cwd
        folder = Path(spec.out) / "jobs"
        executor = self.make_executor(folder)
        cluster = executor.cluster
        state.data.update(launcher="submitit", cluster=cluster, folder=str(folder))
        state.data.setdefault("jobs", {})
        limit = self.parallel_limit(cluster)
        poll_s = self.poll_s or (0.5 if cluster == "local" else 15.0)
        threads = self.options["cpus_per_task"] or (max(1, (os.cpu_count() or 1) // limit) if cluster == "local" and limit else None)
        # Parallel jobs would all write the same synthetic cache folder: make it once, here.
        sweep.prepare_data(spec)
        mark_finished_on_disk(spec, state)
        live: dict[str, object] = {}
        self._recover(spec, state, executor, live, console)

        trainer_of = {}
        for cell in spec.cells:
            trainer_of.setdefault(cell.train_key, cell)
        done = sum(state.entry("cells", c.name)["state"] == "done" for c in spec.cells)
        console.print(f"sweep: {len(spec.cells)} cells ({done} done, {len(live)} jobs still running), "
                      f"{len(trainer_of)} trainings, submitit on [bold]{cluster}[/] "
                      f"(at most {limit or 'unlimited'} at once) -> {folder}")
        while True:
            self._collect(spec, state, live, cluster, console)
            ready = [("trainings", key, "train", cell) for key, cell in trainer_of.items()
                     if state.entry("trainings", key)["state"] == "pending"]
            waiting = 0
            for cell in spec.cells:
                entry, training = state.entry("cells", cell.name), state.entry("trainings", cell.train_key)
                if entry["state"] != "pending":
                    continue
                if training["state"] == "done":
                    ready.append(("cells", cell.name, "cell", cell))
                elif training["state"] == "failed":
                    state.set("cells", cell.name, state="failed", job_id=None, log=training.get("log"),
                              error=f"training {cell.train_key} failed:\n{training.get('error', '')}")
                else:
                    waiting += 1
            if limit is not None:
                ready = ready[: max(0, limit - len(live))]
            if ready:
                self._submit(executor, ready, spec, state, live, threads, console)
            if not live and not ready:
                if waiting:  # cannot happen unless state.json was edited by hand: do not spin forever
                    console.print(f"[red]{waiting} cells wait for a training that is neither running nor done; re-run the sweep")
                return
            time.sleep(poll_s)

    def _submit(self, executor, ready, spec, state, live, threads, console) -> None:
        with executor.batch():  # one Slurm job array per round (array_parallelism applies to it)
            # trainings keep TrainConfig.threads (as under `toolkit run`, so a job trains bit for bit like the
            # local launcher); evaluations share the machine's cores between the jobs that run at once
            jobs = [executor.submit(run_job, kind, spec, cell, threads=threads if kind == "cell" else None)
                    for _, _, kind, cell in ready]
        for (group, key, kind, _), job in zip(ready, jobs):
            self._submitted.add(job.job_id)
            state.data["jobs"][job.job_id] = f"{group}/{key}"
            state.set(group, key, state="running", job_id=job.job_id, log=str(job.paths.stdout))
            live[f"{group}/{key}"] = job
            console.print(f"submitted {'training' if kind == 'train' else 'cell'} {key}: job {job.job_id}, log {job.paths.stdout}")

    def _collect(self, spec, state, live, cluster, console) -> None:
        """Record the jobs that ended: done if their run.json / results.json exists, else failed with the log's tail."""
        for tag, job in list(live.items()):
            if not self._ended(job, cluster):
                continue
            group, key = tag.split("/", 1)
            if not _truth(spec, group, key).exists():
                first = self._ended_at.setdefault(tag, time.time())
                if cluster != "local" and time.time() - first < RESULT_GRACE_S:
                    continue
                error = _job_error(job)
                state.set(group, key, state="failed", error=error)
                console.print(f"[red]{group[:-1]} {key} failed[/] (job {job.job_id}, log {job.paths.stdout}): "
                              f"{error_summary(error)}")
            else:
                state.set(group, key, state="done")
                console.print(f"[green]{group[:-1]} {key} done[/] (job {job.job_id})")
            del live[tag]

    def _recover(self, spec, state, executor, live, console) -> None:
        """Adopt the jobs of an earlier submitter that still run; everything else not done goes back to pending."""
        cluster, folder = executor.cluster, executor.folder
        job_class = JOB_CLASSES[cluster]
        recorded = state.data["jobs"]
        unrecorded: dict[str, list[str]] = {}
        for path in sorted(folder.glob("*_submitted.pkl")):  # submitted, but the submitter died before recording it
            job_id = path.name[: -len("_submitted.pkl")]
            if job_id in recorded:
                continue
            try:
                kind, _, cell = job_class(folder=folder, job_id=job_id).submission().args
            except Exception:  # not one of ours, or unreadable: leave it alone
                continue
            tag = f"trainings/{cell.train_key}" if kind == "train" else f"cells/{cell.name}"
            recorded[job_id] = tag
            unrecorded.setdefault(tag, []).append(job_id)
        tags = [f"trainings/{k}" for k in dict.fromkeys(c.train_key for c in spec.cells)]
        tags += [f"cells/{c.name}" for c in spec.cells]
        for tag in tags:
            group, key = tag.split("/", 1)
            entry = state.entry(group, key)
            if entry["state"] == "done":
                continue
            candidates = [entry["job_id"]] if entry["state"] == "running" and entry.get("job_id") else []
            for job_id in candidates + unrecorded.get(tag, []):
                job = job_class(folder=folder, job_id=str(job_id))
                if not self._ended(job, cluster):
                    entry.update(state="running", job_id=job.job_id, log=str(job.paths.stdout))
                    live[tag] = job
                    console.print(f"adopted running job {job.job_id} ({group[:-1]} {key})")
                    break
            else:
                entry["state"] = "pending"  # lost, failed or never submitted: (re)submit
        state.save()

    def _ended(self, job, cluster: str) -> bool:
        if job.paths.result_pickle.exists():  # the function returned or raised; the process may still be exiting
            return True
        if cluster == "local" and job.job_id not in self._submitted:
            return not pid_alive(job.job_id)  # a job of an earlier submitter: not our child, ask the OS
        return job.done()

    @staticmethod
    def job_alive(job_id: str, state: dict) -> bool | None:
        """Whether a recorded job still runs (for ``--status``); None when it cannot be told."""
        cluster = state.get("cluster")
        if cluster == "local":
            return pid_alive(job_id)
        if cluster == "slurm":
            try:
                job = submitit.SlurmJob(folder=state.get("folder", "."), job_id=str(job_id))
                slurm_state = job.get_info(mode="force").get("State") or "UNKNOWN"  # one sacct call now
                return slurm_state.split()[0].upper() in ALIVE_SLURM
            except Exception:
                return None
        return None


def absolute(spec):
    """``spec`` with its gin files, plugin files and output folder as absolute paths."""
    plugins = [str(Path(p).resolve()) if str(p).endswith(".py") or Path(p).exists() else p for p in spec.plugins]
    return dataclasses.replace(spec, files=[str(Path(f).resolve()) for f in spec.files], plugins=plugins,
                               out=str(Path(spec.out).resolve()))


def pid_alive(pid) -> bool:
    """True while process ``pid`` runs a submitit controller (a zombie or a reused pid counts as ended)."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        except OSError:
            return True
        return status not in ("Z", "X") and b"submitit" in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _truth(spec, group: str, key: str) -> Path:
    if group == "trainings":
        return spec.train_dir(key) / "run.json"
    return Path(spec.out) / "cells" / key / "results.json"


def _job_error(job) -> str:
    """The traceback submitit kept, when the function raised; else the last lines of the job's log; else why there is nothing.

    The kept traceback comes first: submitit writes it before the job's log has its last lines.
    """
    if job.paths.result_pickle.exists():
        try:
            failure = job.exception()
        except Exception:  # an unreadable result file: fall back to the log
            failure = None
        if failure is not None:
            return text_tail(str(failure))
    tail = log_tail(job.paths.stdout)
    if tail:
        return tail
    return f"job {job.job_id} ended without a result or a log (killed, out of memory or out of time?)"
