"""Group commit (`svc.batching.Batched`): which items share a run, in which order, and what each
caller gets back. Pure asyncio: the statement here records the batches it was given."""

from __future__ import annotations

import asyncio

import pytest

from svc.batching import Batched


class Recorder:
    """A statement that returns every item it is given (but those in `drop`), and remembers its batches."""

    def __init__(self, *, drop: frozenset[str] = frozenset(), fail: bool = False) -> None:
        self.batches: list[list[tuple[str, int]]] = []
        self.drop = drop
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: list[tuple[str, int]]) -> list[tuple[str, int]]:
        self.batches.append(items)
        await self.release.wait()
        if self.fail:
            raise RuntimeError("the statement failed")
        return [item for item in items if item[0] not in self.drop]


def batched(recorder: Recorder, limit: int = 64) -> Batched[tuple[str, int], tuple[str, int]]:
    return Batched(recorder, key=lambda item: item[0], result_key=lambda result: result[0], limit=limit)


def test_items_submitted_while_a_run_is_in_flight_go_together_in_the_next():
    async def scenario() -> tuple[list, list]:
        recorder = Recorder()
        run = batched(recorder)
        recorder.release.clear()
        first = asyncio.create_task(run(("a", 1)))
        await asyncio.sleep(0)  # the first run starts and waits for its statement
        await asyncio.sleep(0)
        later = [asyncio.create_task(run((key, 1))) for key in "bcd"]
        await asyncio.sleep(0)
        recorder.release.set()
        return await asyncio.gather(first, *later), recorder.batches

    results, batches = asyncio.run(scenario())
    assert results == [("a", 1), ("b", 1), ("c", 1), ("d", 1)]
    assert batches == [[("a", 1)], [("b", 1), ("c", 1), ("d", 1)]]


def test_a_key_runs_once_per_batch_and_its_items_keep_their_order():
    async def scenario() -> tuple[list, list]:
        recorder = Recorder()
        run = batched(recorder)
        items = [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1), ("b", 2)]
        return await asyncio.gather(*(run(item) for item in items)), recorder.batches

    results, batches = asyncio.run(scenario())
    assert results == [("a", 1), ("b", 1), ("a", 2), ("a", 3), ("c", 1), ("b", 2)]
    assert batches == [[("a", 1), ("b", 1), ("c", 1)], [("a", 2), ("b", 2)], [("a", 3)]]


def test_a_run_takes_at_most_limit_items():
    async def scenario() -> list:
        recorder = Recorder()
        run = batched(recorder, limit=2)
        await asyncio.gather(*(run((key, 1)) for key in "abcde"))
        return recorder.batches

    assert [len(batch) for batch in asyncio.run(scenario())] == [2, 2, 1]


def test_an_item_without_a_result_gets_none_and_the_others_theirs():
    async def scenario() -> list:
        run = batched(Recorder(drop=frozenset({"b"})))
        return await asyncio.gather(*(run((key, 1)) for key in "abc"))

    assert asyncio.run(scenario()) == [("a", 1), None, ("c", 1)]


def test_the_statements_error_reaches_every_caller_of_that_run_and_the_next_run_still_happens():
    async def scenario() -> tuple[list, object]:
        recorder = Recorder(fail=True)
        run = batched(recorder)
        failed = await asyncio.gather(*(run((key, 1)) for key in "ab"), return_exceptions=True)
        recorder.fail = False
        return failed, await run(("c", 1))

    failed, after = asyncio.run(scenario())
    assert [str(e) for e in failed] == ["the statement failed"] * 2
    assert after == ("c", 1)


def test_a_caller_that_stops_waiting_does_not_stop_the_run_of_the_others():
    async def scenario() -> tuple[object, list]:
        recorder = Recorder()
        run = batched(recorder)
        recorder.release.clear()
        leaving = asyncio.create_task(run(("a", 1)))
        staying = asyncio.create_task(run(("b", 1)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # both are in the run, waiting for the statement
        leaving.cancel()
        recorder.release.set()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        return await staying, recorder.batches

    result, batches = asyncio.run(scenario())
    assert result == ("b", 1)
    assert batches == [[("a", 1), ("b", 1)]]  # the leaving caller's item was still recorded


def test_runs_in_flight_are_at_most_concurrency_and_never_share_a_key():
    async def scenario() -> list:
        recorder = Recorder()
        run = Batched(recorder, key=lambda item: item[0], result_key=lambda result: result[0], concurrency=2)
        recorder.release.clear()
        first = [asyncio.create_task(run((key, 1))) for key in "ab"]
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # [a, b] in flight
        second = asyncio.create_task(run(("c", 1)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # [c] in flight beside it: two runs, the most there may be
        waiting = [asyncio.create_task(run(item)) for item in (("a", 2), ("d", 1))]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(recorder.batches) == 2  # a third run waits for one of the two
        recorder.release.set()
        await asyncio.gather(*first, second, *waiting)
        return recorder.batches

    assert asyncio.run(scenario()) == [[("a", 1), ("b", 1)], [("c", 1)], [("a", 2), ("d", 1)]]


def test_a_busy_instance_waits_to_gather_as_many_as_its_last_run_took_and_an_idle_one_does_not():
    async def scenario() -> tuple[list, list]:
        recorder = Recorder()
        run = Batched(recorder, key=lambda item: item[0], result_key=lambda result: result[0], gather=0.5)
        await asyncio.gather(run(("a", 1)), run(("b", 1)))  # idle: runs at once, the two together
        first = asyncio.create_task(run(("c", 1)))  # busy now: waits up to 0.5 s for a second item
        await asyncio.sleep(0.05)
        before_second = list(recorder.batches)
        second = asyncio.create_task(run(("d", 1)))
        await asyncio.gather(first, second)
        return before_second, recorder.batches

    before_second, batches = asyncio.run(scenario())
    assert before_second == [[("a", 1), ("b", 1)]]
    assert batches == [[("a", 1), ("b", 1)], [("c", 1), ("d", 1)]]


def test_a_busy_instance_whose_last_run_took_one_item_runs_the_next_without_waiting():
    async def scenario() -> list:
        recorder = Recorder()
        run = Batched(recorder, key=lambda item: item[0], result_key=lambda result: result[0], gather=60)
        await run(("a", 1))
        # As many as the last run took are already waiting: no reason to wait the 60 s for more.
        await asyncio.wait_for(run(("b", 1)), 10)
        return recorder.batches

    assert asyncio.run(scenario()) == [[("a", 1)], [("b", 1)]]
