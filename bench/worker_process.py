"""The worker benchmark's worker process: ``python -m bench.worker_process --serve CONFIG``,
a real ``Worker.run_forever`` (one process each, like ``pimlico worker``) running the real
handlers and the synthetic kinds, its clock shifted so that D comes when the benchmark says;
it reports the wall-clock instant of every commit it made. ``Child`` drives one from the
benchmark.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from cProfile import Profile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

from pimlico.db.audit import WriteContext
from pimlico.jobs import handlers
from pimlico.jobs.worker import Handler, Job, Worker
from pimlico.services.runtime import Pimlico
from pimlico.settings import Settings

AUDIT, NOTHING = "bench.audit", "bench.nothing"
ROOT = Path(__file__).resolve().parent.parent


def audit(rt: Pimlico, w: WriteContext, job: Job) -> None:
    w.record(
        action="bench.job_ran",
        target_type="bench",
        target_id=job.id,
        before=None,
        after={"attempt": job.attempt},
    )


def nothing(rt: Pimlico, w: WriteContext, job: Job) -> None:
    pass


HANDLERS: Mapping[str, Handler] = {AUDIT: audit, NOTHING: nothing}
"""The synthetic kinds, run alongside the real ones (as ``pimlico worker --handlers``)."""


# -- the worker process -------------------------------------------------------------------


class ShiftedClock:
    """The wall clock shifted by ``offset`` (set once the world's due instant is known)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ProfiledWorker(Worker):
    """A worker whose runs (not its sleeps) are profiled."""

    profile = Profile()

    def run_once(self, now: datetime) -> int:
        self.profile.enable()
        try:
            return super().run_once(now)
        finally:
            self.profile.disable()


def _serve(config: dict[str, Any]) -> None:
    """Say it is ready, start the worker on the first line of input (its clock's offset),
    run it until the input closes, then print its commit instants as JSON."""
    commits: list[float] = []
    clock = ShiftedClock()
    kind = ProfiledWorker if config["profile"] else Worker
    with Pimlico(Settings(database_url=config["url"]), clock=clock) as rt:
        event.listen(rt.sessions, "after_commit", lambda _session: commits.append(time.time()))
        real = handlers.worker_handlers(rt.settings) if config["consumers"] else handlers.HANDLERS
        kinds = {**real, **HANDLERS}
        if config["batch"] is None:
            worker = kind(rt, kinds, name=config["name"])
        else:
            worker = kind(rt, kinds, name=config["name"], batch=config["batch"])
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,))
        said = {"batch": worker.batch, "group": worker.group, "hold": worker.hold}
        print(json.dumps(said), flush=True)
        clock.offset = timedelta(seconds=json.loads(sys.stdin.readline())["offset"])
        thread.start()
        sys.stdin.read()
        stop.set()
        worker.wake()
        thread.join()
    if config["profile"]:
        ProfiledWorker.profile.dump_stats(config["profile"])
    print(json.dumps(commits), flush=True)


@dataclass
class Child:
    """A worker process, and its settings as it reported them."""

    name: str
    process: subprocess.Popen[str]
    settings: str = ""

    @classmethod
    def spawn(
        cls,
        url: str,
        name: str,
        batch: int | None,
        profile: str | None = None,
        *,
        consumers: bool = False,
    ) -> Child:
        config = {
            "url": url,
            "name": name,
            "batch": batch,
            "profile": profile,
            "consumers": consumers,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker_process", "--serve", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return cls(name, process)

    def ready(self) -> None:
        """Wait until the process has built its worker (its imports take seconds)."""
        assert self.process.stdout is not None
        said = json.loads(self.process.stdout.readline())
        self.settings = (
            f"batch {said['batch']}, {said['group']} jobs per savepoint, "
            f"hold {said['hold'] * 1000:.0f} ms"
        )

    def go(self, offset: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"offset": offset}) + "\n")
        self.process.stdin.flush()

    def stop(self) -> list[float]:
        """Close its input, wait for it to finish, and return its commit instants."""
        out, _ = self.process.communicate(timeout=120)
        if self.process.returncode != 0:
            raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}")
        commits: list[float] = json.loads(out.strip().splitlines()[-1])
        return commits

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    _serve(json.loads(sys.argv[2]))
