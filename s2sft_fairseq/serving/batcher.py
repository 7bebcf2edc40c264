"""Dynamic batching: concurrent requests with the same decoding settings decoded together.

Every input of every accepted request waits in one FIFO queue (at most ``--max-queue`` inputs;
a request that does not fit is refused at once with :class:`QueueFull`, which the app answers with
503 and ``Retry-After``). One asyncio task forms batches: it takes the oldest waiting input, and
the next ones with the same decoding settings (:meth:`GenerateRequest.batching_key`) in arrival
order, until the batch holds ``--max-batch-size`` inputs or ``--max-batch-tokens`` source tokens
(inputs x longest, padding included) or the oldest input has waited ``--max-wait-ms``. One worker
thread decodes the batch with ``S2SFT.generate`` (the model's own batching sorts it by length),
so the event loop keeps accepting requests meanwhile; the results go back to each request by
position, so every client gets exactly its own outputs.

A request that is withdrawn (its client disconnected, or it timed out) has its inputs that are
still waiting removed from the queue: that work is never done (``dropped_inputs``). Inputs
already in the running batch finish with it and are discarded.
"""
import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional

logger = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after: int, waiting: int, limit: int):
        super().__init__(f"the queue holds {waiting} of {limit} inputs (--max-queue); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One accepted request: its texts, their source lengths as decoded (tokens with [CLS] and
    [SEP], truncation applied) and, once decoded, its results."""
    texts: List[str]
    token_counts: List[int]
    options: Dict
    key: tuple
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)
    results: List = field(init=False)
    remaining: int = field(init=False)

    def __post_init__(self):
        self.results = [None] * len(self.texts)
        self.remaining = len(self.texts)


@dataclass(eq=False)
class _Item:
    job: Job
    index: int

    @property
    def tokens(self) -> int:
        return self.job.token_counts[self.index]


@dataclass
class Stats:
    accepted_requests: int = 0
    decoded_inputs: int = 0
    batches: int = 0
    largest_batch: int = 0
    dropped_inputs: int = 0
    refused_queue_full: int = 0
    failed_batches: int = 0
    decode_seconds: float = 0.0


class DynamicBatcher:
    def __init__(self, model, limits):
        self.model, self.limits = model, limits
        self.stats = Stats()
        self._queue: Deque[_Item] = deque()
        self._arrival = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s2sft-decode")
        self._running: List[_Item] = []
        self._task: Optional[asyncio.Task] = None

    # ------------------------------------------------------------------ the app's side
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """After the server has drained (uvicorn waits for in-flight requests first)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def submit(self, texts: List[str], token_counts: List[int], options: Dict, key: tuple) -> Job:
        waiting = len(self._queue)
        if waiting + len(texts) > self.limits.max_queue:
            self.stats.refused_queue_full += 1
            raise QueueFull(self._retry_after(waiting + len(self._running)), waiting, self.limits.max_queue)
        job = Job(texts, token_counts, options, key, asyncio.get_running_loop().create_future())
        self._queue.extend(_Item(job, i) for i in range(len(texts)))
        self.stats.accepted_requests += 1
        self._arrival.set()
        return job

    def withdraw(self, job: Job) -> None:
        """Drop the job's inputs that are still waiting (the client is gone or timed out)."""
        if job.future.done():  # answered, or withdrawn already (withdrawing cancels the future)
            return
        kept = deque(item for item in self._queue if item.job is not job)
        self.stats.dropped_inputs += len(self._queue) - len(kept)
        self._queue = kept
        job.future.cancel()
        self._arrival.set()  # the batch former may be waiting on this job's inputs

    @property
    def waiting_inputs(self) -> int:
        return len(self._queue)

    @property
    def running_inputs(self) -> int:
        return len(self._running)

    def _retry_after(self, ahead: int) -> int:
        """Seconds until the inputs ahead are likely decoded, from the throughput so far (>= 1)."""
        rate = self.stats.decoded_inputs / self.stats.decode_seconds if self.stats.decode_seconds > 0 else 0.0
        return max(1, math.ceil(ahead / rate)) if rate > 0 else 1

    # ------------------------------------------------------------------ forming and running batches
    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._arrival.clear()
                await self._arrival.wait()
                continue
            head = self._queue[0]
            deadline = head.job.arrived + self.limits.max_wait_ms / 1000.0
            while not self._batch_is_full(head):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), timeout=left)
                except asyncio.TimeoutError:
                    break
                if not self._queue or self._queue[0] is not head:
                    break
            if not self._queue or self._queue[0] is not head:
                continue  # the head was withdrawn while waiting: start over
            await self._run(self._take_batch(head))

    def _fits(self, count: int, longest: int) -> bool:
        return count <= self.limits.max_batch_size and count * longest <= self.limits.max_batch_tokens

    def _batch_is_full(self, head: _Item) -> bool:
        """No more input of the head's settings could join the batch it would start now."""
        count, longest = 0, 0
        for item in self._queue:
            if item.job.key != head.job.key:
                continue
            if count and not self._fits(count + 1, max(longest, item.tokens)):
                return True
            count, longest = count + 1, max(longest, item.tokens)
        return count >= self.limits.max_batch_size

    def _take_batch(self, head: _Item) -> List[_Item]:
        """The head and, in arrival order, the inputs of the same settings that still fit."""
        batch, rest, longest = [], deque(), 0
        for item in self._queue:
            if item.job.key == head.job.key and (not batch or self._fits(len(batch) + 1, max(longest, item.tokens))):
                batch.append(item)
                longest = max(longest, item.tokens)
            else:
                rest.append(item)
        self._queue = rest
        return batch

    async def _run(self, batch: List[_Item]) -> None:
        self._running = batch
        texts = [item.job.texts[item.index] for item in batch]
        options = dict(batch[0].job.options, batch_size=len(batch), max_tokens=None)
        t0 = time.monotonic()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: self.model.generate(texts, **options))
        except Exception as e:  # a failure of this batch fails its requests, not the server
            logger.exception("decoding a batch of %d inputs failed", len(batch))
            self.stats.failed_batches += 1
            for job in {item.job for item in batch}:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        finally:
            self._running = []
            self.stats.decode_seconds += time.monotonic() - t0
        self.stats.batches += 1
        self.stats.decoded_inputs += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for item, result in zip(batch, results):
            job = item.job
            if job.future.done():
                continue  # withdrawn meanwhile: discarded
            job.results[item.index] = result
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.results)
