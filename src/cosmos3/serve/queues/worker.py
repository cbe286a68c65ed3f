"""Generation worker(s): a bounded FIFO of tasks, run `workers` at a time on the shared Generator.

A task is a prepared `generate(...)` call plus what to do with the result (`finish`, run on the worker thread, e.g.
write the job's files). Cancellation sets the task's event; the sampler's step callback raises `Cancelled` at the next
step boundary. Progress is the fraction of denoising steps done, 0-99 while running (100 once the result is saved),
counted over every sampling run of the task (`runs`: a long forward-dynamics rollout samples chunk after chunk), so it
only rises: `step` of `steps` in all.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ...diffusion import Cancelled

log = logging.getLogger("cosmos3.serve")


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"queue full; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass
class GenTask:
    id: str
    kwargs: dict[str, Any]  # for Generator.generate
    finish: Callable[[Any], Any] | None = None  # result -> value of the future (runs on the worker thread)
    on_start: Callable[[], bool] | None = None  # False: skip the task (it was cancelled while queued)
    on_progress: Callable[[int, int, int], None] | None = None  # (percent, step, steps), when the percent changes
    runs: int = 1  # sampling runs of the request (each calls the step callback from 1 to its step count)
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)
    progress: int = 0
    step: int = 0  # denoising steps done, every run together
    steps: int | None = None  # in all: runs x steps per run, known once the first step reports
    state: str = "queued"  # queued | starting | in_progress | done, or cancelled while queued


class GenerationQueue:
    def __init__(self, generator, max_queue: int = 16, workers: int = 1):
        self.generator = generator
        self.max_queue = max_queue
        self._queue: queue.Queue[GenTask | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0
        self._tasks: dict[str, GenTask] = {}
        self._seconds_per_task = 30.0  # running estimate for Retry-After
        self._threads = [threading.Thread(target=self._run, name=f"cosmos3-gen-{i}", daemon=True)
                         for i in range(workers)]
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            for t in self._threads:
                t.start()

    def stop(self, timeout: float = 5.0) -> None:
        for task in list(self._tasks.values()):
            task.cancel.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)

    # -------------------------------------------------------------------------------------------- queue

    def retry_after(self) -> int:
        with self._lock:
            return self._retry_after()

    def _retry_after(self) -> int:
        """Seconds until a queue slot is likely free: the work ahead over the workers."""
        ahead = self._waiting + len(self._threads)
        return max(1, math.ceil(ahead * self._seconds_per_task / len(self._threads)))

    def submit(self, task: GenTask) -> GenTask:
        """Queue a task, or raise QueueFull (the caller answers 429 with Retry-After)."""
        with self._lock:
            if self._waiting >= self.max_queue:
                raise QueueFull(self._retry_after())
            self._waiting += 1
            self._tasks[task.id] = task
        self._queue.put(task)
        return task

    def get(self, task_id: str) -> GenTask | None:
        return self._tasks.get(task_id)

    def cancel(self, task_id: str) -> GenTask | None:
        """Stop a task: a queued one leaves the queue now (its slot frees at once), a running one stops at the
        next denoising step."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            task.cancel.set()
            dequeued = task.state == "queued"
            if dequeued:
                task.state = "cancelled"
                self._waiting -= 1
                self._tasks.pop(task_id, None)
        if dequeued and not task.future.done():
            task.future.set_exception(Cancelled())
        return task

    @property
    def waiting(self) -> int:
        return self._waiting

    # -------------------------------------------------------------------------------------------- worker

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            with self._lock:
                if task.state == "cancelled":  # left the queue already
                    continue
                self._waiting -= 1
                task.state = "starting"
            try:
                self._execute(task)
            except BaseException as e:  # never let a task take the worker down
                log.exception("generation task %s crashed", task.id)
                if not task.future.done():
                    task.future.set_exception(e)
            finally:
                task.state = "done"
                self._tasks.pop(task.id, None)

    def _execute(self, task: GenTask) -> None:
        if task.cancel.is_set() or (task.on_start is not None and not task.on_start()):
            task.future.set_exception(Cancelled())
            return
        task.state = "in_progress"

        runs = max(1, task.runs)
        seen = {"run": 0, "last": 0}

        def step(done: int, total: int) -> None:
            if task.cancel.is_set():
                raise Cancelled()
            if done <= seen["last"]:  # the next sampling run started over at step 1
                seen["run"] += 1
            seen["last"] = done
            steps = max(total, 1) * max(runs, seen["run"] + 1)
            task.step, task.steps = min(seen["run"] * max(total, 1) + done, steps), steps
            value = min(99, int(100 * task.step / steps))
            if value != task.progress:
                task.progress = value
                if task.on_progress is not None:
                    task.on_progress(value, task.step, steps)

        started = time.perf_counter()
        try:
            with torch.inference_mode():
                result = self.generator.generate(**task.kwargs, progress=False, callback=step)
            value = task.finish(result) if task.finish is not None else result
        except BaseException as e:
            task.future.set_exception(e)
            return
        finally:
            elapsed = time.perf_counter() - started
            self._seconds_per_task = 0.7 * self._seconds_per_task + 0.3 * elapsed
        task.progress = 100
        if task.steps is not None:
            task.step = task.steps
        task.future.set_result(value)
