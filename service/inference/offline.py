"""The offline lane: how work nobody is waiting on token by token (batch lines, and through batches the
eval runs' samples and judgements) enters the engine.

Interactive requests are bounded by `Admission` (a 429 past its limits); offline work is never refused,
it waits here for room instead. Room is the engine's own capacity, the requests it runs in one step
(vLLM's `max_num_seqs`), less the interactive requests in flight and a reserve kept free for the next
ones, so that an interactive request arriving during a batch is scheduled at the next step rather than
after a batch line ends. Offline requests run at BATCH_PRIORITY: vLLM schedules waiting interactive
requests first and, when the KV cache runs short, preempts offline ones. Each entry is weighed by the
sequences it asks for (`n`).

While interactive requests are being served (one in flight, or one ended within YIELD_SECONDS) the
lane also keeps offline work to `yield_lines` sequences: on a CPU every sequence in a step makes the
step, and so every interactive token, slower (bench/batch.py measures both sides of this). A GPU's
step time hardly grows with the sequences, so there it does not yield by default.
"""

from __future__ import annotations

import time

YIELD_SECONDS = 1.0
CPU_YIELD_LINES = 16


class OfflineLane:
    def __init__(self, engine, reserve: int, yield_lines: int | None = None):
        """`reserve`: engine slots offline work leaves free for interactive requests; `yield_lines`: the
        sequences it keeps to while interactive requests are served (0: no limit; None: 16 on a CPU, no
        limit on a GPU)."""
        self.engine, self.reserve, self._yield_lines = engine, reserve, yield_lines
        self.entered = 0  # sequences of offline work admitted and not yet done

    @property
    def yield_lines(self) -> int:
        if self._yield_lines is None:
            from service.inference.engine import on_gpu

            self._yield_lines = 0 if on_gpu() else CPU_YIELD_LINES
        return self._yield_lines

    def capacity(self) -> int:
        """Sequences offline work may have in the engine now (at least one, so that it always moves)."""
        room = self.engine.max_num_seqs - self.reserve - self.engine.interactive
        served = self.engine.interactive or time.monotonic() - self.engine.interactive_ended_at < YIELD_SECONDS
        if served and self.yield_lines:
            room = min(room, self.yield_lines)
        return max(1, room)

    async def enter(self, weight: int = 1) -> int:
        """Wait for room for an offline request of `weight` sequences and take it; what `leave` gives back.
        (Waiters are woken whenever a request ends, offline or interactive.)"""
        weight = max(1, min(weight, self.engine.max_num_seqs or 1))
        async with self.engine.ended:
            await self.engine.ended.wait_for(lambda: self.entered + weight <= max(self.capacity(), weight))
            self.entered += weight
        return weight

    async def leave(self, weight: int) -> None:
        self.entered -= weight
        async with self.engine.ended:
            self.engine.ended.notify_all()
