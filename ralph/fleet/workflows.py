"""The fleet's workflows: one per repository (`RalphRepo`), started by one per fleet
(`RalphFleet`), which keeps the fleet-wide budget.

A run's state (iterations, totals, the gate's feedback, guidance) lives in its workflow, so
any worker can run its next iteration from a fresh clone of the branch the last one pushed.
Workflow code is replayed: deterministic, no I/O (the activities do that).

Temporal's outcomes as ralph statuses: retries exhausted or an attempt timed out -> error
(exit 1); cancelled (`ralph fleet cancel`) -> interrupted (130); the fleet budget -> budget
(4); otherwise the loop's own status (completed, max_iterations, budget, stalled, failed).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from ..status import RunStatus
    from .model import (
        SA_COST,
        SA_FLEET,
        SA_ITERATIONS,
        SA_PROMPT,
        SA_REPOSITORY,
        SA_STATUS,
        FleetJob,
        Guide,
        IterationInput,
        IterationRecord,
        IterationResult,
        Prepared,
        Published,
        PublishInput,
        RepoRun,
        RepoState,
        TaskState,
    )

K_STATUS = SearchAttributeKey.for_keyword(SA_STATUS)
K_COST = SearchAttributeKey.for_float(SA_COST)
K_ITERATIONS = SearchAttributeKey.for_int(SA_ITERATIONS)
K_REPOSITORY = SearchAttributeKey.for_keyword(SA_REPOSITORY)
K_PROMPT = SearchAttributeKey.for_keyword(SA_PROMPT)
K_FLEET = SearchAttributeKey.for_keyword(SA_FLEET)

SHORT = timedelta(minutes=10)  # prepare and publish: git and a few API calls


@workflow.defn(name="RalphRepo")
class RepoWorkflow:
    """One repository's ralph run, an iteration at a time."""

    def __init__(self) -> None:
        self.state = RepoState("", "", "")
        self.permits: dict[int, bool] = {}
        self.next_guide = 1

    @workflow.query
    def status(self) -> RepoState:
        return self.state

    @workflow.signal
    def permit(self, iteration: int, allowed: bool) -> None:
        """The fleet's answer to `ask`: whether iteration `iteration` may start."""
        self.permits[iteration] = allowed

    @workflow.signal
    def steer(self, text: str, keep: bool = False) -> None:
        """Guidance for the next iteration (with `keep`, every later one too)."""
        self.state.guidance.append(Guide(self.next_guide, text, keep))
        self.next_guide += 1

    @workflow.run
    async def run(self, run: RepoRun) -> RepoState:
        job = run.job
        self.state = RepoState(job.name, job.url, job.prompt_name)
        timing = run.timing
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=timing.retry_s),
            maximum_interval=timedelta(seconds=timing.retry_s * 10),
            maximum_attempts=timing.attempts,
        )
        usage: dict[str, int] = {}
        elapsed, feedback, head = 0.0, None, None
        tasks = TaskState()  # a task-list run's: statuses, the list as it began, retries
        prepared: Prepared | None = None
        st, i = self.state, 1
        try:
            prepared = await workflow.execute_activity(
                "ralph.prepare", run, result_type=Prepared, start_to_close_timeout=SHORT,
                heartbeat_timeout=timedelta(seconds=timing.heartbeat_s), retry_policy=retry,
            )  # fmt: skip
            st.base, st.branch, st.max_iterations = (
                prepared.base,
                prepared.branch,
                prepared.max_iterations,
            )
            st.prompt_name = prepared.prompt_name
            st.run_id = f"{run.started}-{workflow.uuid4().hex[:4]}"
            self._publish_attributes()
            while True:
                # An operation that ends as the cancellation comes may hand the workflow its
                # result instead of the cancellation (temporalio/sdk-python#620): an
                # iteration's (it waits for its cancellation to complete; checked after it,
                # below) or a signal's (the report to the fleet). No iteration starts then.
                _raise_if_cancelled()
                if st.max_iterations and i > st.max_iterations:  # the loop says so first
                    self._end(RunStatus.MAX_ITERATIONS, f"reached max_iterations {i - 1}")
                    break
                if run.budgeted and not await self._ask(run, i):
                    self._end(
                        RunStatus.BUDGET, "the fleet's max_cost was reached: no new iteration"
                    )
                    break
                inp = IterationInput(
                    job=job, workflow_id=workflow.info().workflow_id, run_id=st.run_id,
                    branch=st.branch, base_commit=prepared.base_commit, iteration=i, usage=usage,
                    cost_usd=st.cost_usd, elapsed_s=elapsed, feedback=feedback,
                    guidance=list(st.guidance), expected_head=head, base=prepared.base,
                    tasks=tasks,
                )  # fmt: skip
                result: IterationResult = await workflow.execute_activity(
                    "ralph.iterate", inp, result_type=IterationResult,
                    start_to_close_timeout=timedelta(seconds=timing.iteration_s),
                    heartbeat_timeout=timedelta(seconds=timing.heartbeat_s), retry_policy=retry,
                    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )  # fmt: skip
                given = {g.id for g in inp.guidance if not g.keep}
                st.guidance = [g for g in st.guidance if g.id not in given]
                usage, elapsed, feedback = result.usage, result.elapsed_s, result.feedback
                head = result.head or head
                tasks = result.tasks or tasks
                st.cost_usd = result.cost_usd
                st.pr_url = result.pr_url or st.pr_url
                st.iterations.append(
                    IterationRecord(
                        i,
                        result.outcome,
                        result.summary,
                        result.commit,
                        result.iteration_cost_usd,
                        result.worker,
                    ),
                )
                # The iteration ended as the cancellation came: recorded above, it ends
                # the run all the same, before any report or next iteration.
                _raise_if_cancelled()
                if run.fleet_id:
                    await self._report(run.fleet_id)
                self._publish_attributes()
                if result.status == RunStatus.STOPPED:  # the one iteration asked of it
                    i += 1
                    continue
                self._end(RunStatus(result.status), result.reason)
                break
        except ActivityError as exc:
            if not isinstance(exc.cause, CancelledError):
                self._end(RunStatus.ERROR, _why(exc))
            else:  # the activity confirmed our cancellation: the workflow is cancelled
                await self._cancelled(run)
                raise asyncio.CancelledError() from None
        except asyncio.CancelledError:
            await self._cancelled(run)
            raise
        if run.fleet_id:
            await self._report(run.fleet_id)
        if job.campaign:
            pass  # a campaign opens its own pull request (its report is the body)
        elif (
            job.pr
            and head
            and prepared
            and st.status not in (RunStatus.INTERRUPTED, RunStatus.STOPPED)
        ):
            await self._open_pr(run, prepared)
        return self.state

    async def _cancelled(self, run: RepoRun) -> None:
        self._end(RunStatus.INTERRUPTED, "cancelled through Temporal (ralph fleet cancel)")
        if run.fleet_id:
            await asyncio.shield(self._report(run.fleet_id))

    async def _ask(self, run: RepoRun, i: int) -> bool:
        assert run.fleet_id is not None
        fleet = workflow.get_external_workflow_handle(run.fleet_id)
        await fleet.signal("ask", args=[workflow.info().workflow_id, i])
        await workflow.wait_condition(lambda: i in self.permits)
        return self.permits[i]

    async def _report(self, fleet_id: str) -> None:
        fleet = workflow.get_external_workflow_handle(fleet_id)
        await fleet.signal(
            "report", args=[workflow.info().workflow_id, self.state.cost_usd, self.state.status]
        )

    async def _open_pr(self, run: RepoRun, prepared: Prepared) -> None:
        st = self.state
        inp = PublishInput(
            job=run.job, workflow_id=workflow.info().workflow_id, branch=st.branch,
            base=prepared.base, status=st.status, iterations=len(st.iterations),
            max_iterations=st.max_iterations, reason=st.reason, cost_usd=st.cost_usd,
            records=list(st.iterations),
        )  # fmt: skip
        try:
            done: Published = await workflow.execute_activity(
                "ralph.publish", inp, result_type=Published, start_to_close_timeout=SHORT,
                heartbeat_timeout=timedelta(seconds=run.timing.heartbeat_s),
                retry_policy=RetryPolicy(maximum_attempts=run.timing.attempts),
            )  # fmt: skip
        except ActivityError as exc:
            done = Published(None, None, _why(exc))
        st.pr_url = done.url
        if done.problem:
            st.reason += f" (pull request: {done.problem})"

    def _end(self, status: RunStatus, reason: str) -> None:
        self.state.status, self.state.reason = status.value, reason
        self._publish_attributes()

    def _publish_attributes(self) -> None:
        st = self.state
        workflow.upsert_search_attributes(
            [
                K_STATUS.value_set(st.status),
                K_ITERATIONS.value_set(len(st.iterations)),
                K_COST.value_set(float(st.cost_usd or 0.0)),
            ]
        )
        workflow.upsert_memo(
            {"status": st.status, "cost_usd": st.cost_usd, "branch": st.branch,
             "iterations": len(st.iterations), "reason": st.reason, "pr": st.pr_url}
        )  # fmt: skip


def _raise_if_cancelled() -> None:
    """The workflow's cancellation, when it was asked for but not raised (see #620 above)."""
    if workflow.cancellation_reason() is not None:
        raise asyncio.CancelledError()


def _why(exc: ActivityError) -> str:
    cause = exc.cause
    while isinstance(cause, ActivityError | ApplicationError) and cause.cause is not None:
        if isinstance(cause, ApplicationError) and cause.message:
            break
        cause = cause.cause
    message = getattr(cause, "message", None) or str(cause or exc)
    return f"the iteration failed on Temporal: {message}"


@workflow.defn(name="RalphFleet")
class FleetWorkflow:
    """Starts one RalphRepo workflow per repository and keeps the fleet's budget: an
    iteration starts only while the fleet's recorded cost is under `max_cost`."""

    def __init__(self) -> None:
        self.max_cost: float | None = None
        self.costs: dict[str, float] = {}
        self.statuses: dict[str, str] = {}
        self.decisions: list[dict[str, Any]] = []

    @workflow.query
    def status(self) -> dict[str, Any]:
        return {
            "max_cost": self.max_cost,
            "cost_usd": self.total(),
            "runs": dict(self.statuses),
            "costs": dict(self.costs),
            "decisions": list(self.decisions),
        }

    def total(self) -> float:
        return sum(self.costs.values())

    @workflow.signal
    def report(self, run: str, cost: float | None, status: str) -> None:
        self.costs[run] = float(cost or 0.0)
        self.statuses[run] = status

    @workflow.signal
    async def ask(self, run: str, iteration: int) -> None:
        total = self.total()
        allowed = self.max_cost is None or total < self.max_cost
        self.decisions.append(
            {"run": run, "iteration": iteration, "fleet_cost": total, "allowed": allowed}
        )
        await workflow.get_external_workflow_handle(run).signal("permit", args=[iteration, allowed])

    @workflow.run
    async def run(self, job: FleetJob) -> dict[str, Any]:
        self.max_cost = job.max_cost
        me = workflow.info().workflow_id
        started = workflow.now().strftime("%Y%m%d-%H%M%S")
        children = []
        for repo in job.repos:
            child_id = f"{me}.{repo.name}"
            self.statuses[child_id] = RunStatus.RUNNING.value
            children.append(
                await workflow.start_child_workflow(
                    RepoWorkflow.run,
                    RepoRun(repo, job.timing, me, job.max_cost is not None, started),
                    id=child_id,
                    task_queue=job.task_queue,
                    parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(K_REPOSITORY, repo.url),
                            SearchAttributePair(K_PROMPT, repo.prompt_name),
                            SearchAttributePair(K_FLEET, me),
                            SearchAttributePair(K_STATUS, RunStatus.RUNNING.value),
                        ]
                    ),
                    memo={"repository": repo.url, "prompt": repo.prompt_name, "fleet": me},
                )
            )
        results = await asyncio.gather(*children, return_exceptions=True)
        for child_id, result in zip((f"{me}.{r.name}" for r in job.repos), results, strict=True):
            if isinstance(result, RepoState):
                self.statuses[child_id] = result.status
                self.costs[child_id] = float(result.cost_usd or 0.0)
        return self.status()
