"""The fleet commands' work: connect to Temporal, run a worker, start, list, inspect,
cancel, steer and schedule fleets. Imported only by `ralph fleet ...` (temporalio is heavy)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from ..errors import RalphError, UsageError
from ..run.control import GUIDANCE_LIMIT
from ..status import RunStatus
from ..text import clean
from .activities import Activities
from .model import NAMESPACE, SEARCH_ATTRIBUTES, FleetJob, RepoState
from .spec import load_fleet
from .workflows import FleetWorkflow, RepoWorkflow


def default_address() -> str:
    return os.environ.get("TEMPORAL_ADDRESS") or "localhost:7233"


def default_namespace() -> str:
    return os.environ.get("TEMPORAL_NAMESPACE") or NAMESPACE


async def connect(address: str, namespace: str, identity: str | None = None) -> Client:
    """A client, or a RalphError that says where Temporal was looked for."""
    try:
        kwargs: dict[str, Any] = {"namespace": namespace}
        if identity:
            kwargs["identity"] = identity
        return await Client.connect(address, **kwargs)
    except Exception as exc:
        raise RalphError(
            f"cannot reach Temporal at {address} (namespace {namespace}): {exc}; start a server "
            "(`temporal server start-dev` for a local one) or pass --address HOST:PORT"
        ) from None


async def ensure_search_attributes(client: Client, namespace: str) -> None:
    """Register the fleet's search attributes on the server (once; later calls find them)."""

    kinds = {
        "keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
        "int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    have = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: kinds[kind]
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in have.custom_attributes
    }
    if not missing:
        return
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(search_attributes=missing, namespace=namespace)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise RalphError(
                f"cannot register the fleet's search attributes ({', '.join(missing)}) on "
                f"Temporal: {exc.message}; an operator can add them with `temporal operator "
                "search-attribute create`"
            ) from None


# --- worker ----------------------------------------------------------------------------------


async def run_worker(
    address: str, namespace: str, task_queue: str, slots: int, workdir: Path, out: TextIO
) -> None:
    """Poll `task_queue` until SIGINT or SIGTERM; run up to `slots` iterations at a time."""
    from temporalio.worker import Worker  # the worker machinery: only `ralph fleet worker`

    identity = f"{socket.gethostname()}:{os.getpid()}"
    client = await connect(address, namespace, identity)
    await ensure_search_attributes(client, namespace)
    workdir.mkdir(parents=True, exist_ok=True)
    acts = Activities(workdir.resolve(), identity)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FleetWorkflow, RepoWorkflow],
        activities=[acts.prepare, acts.iterate, acts.publish],
        max_concurrent_activities=slots,
        identity=identity,
        # A dead worker's cached workflows move to the others after this long.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
        graceful_shutdown_timeout=timedelta(seconds=35),
        # Heartbeats go out at most this often (else every 0.8 heartbeat timeouts, which a
        # loaded machine can miss by the remaining 0.2).
        max_heartbeat_throttle_interval=timedelta(seconds=1),
    )
    async with worker:
        out.write(
            f"ralph fleet worker {identity}: polling {task_queue!r} on {address} "
            f"({namespace}), {slots} slot(s), checkouts in {workdir}\n"
        )
        out.flush()
        await stop.wait()
        out.write("ralph fleet worker: stopping (running iterations are interrupted)\n")
        out.flush()


# --- submit and schedule -------------------------------------------------------------------


def fleet_id(job: FleetJob) -> str:
    return f"fleet-{job.fleet}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


async def submit(address: str, namespace: str, path: Path, wait: bool, out: TextIO) -> int:
    job = load_fleet(path)
    client = await connect(address, namespace)
    await ensure_search_attributes(client, namespace)
    wid = fleet_id(job)
    handle = await client.start_workflow(FleetWorkflow.run, job, id=wid, task_queue=job.task_queue)
    out.write(f"started fleet {wid}: {len(job.repos)} repositories ({_budget(job)})\n")
    for repo in job.repos:
        out.write(f"  {wid}.{repo.name}  {repo.url}  {repo.prompt_name}\n")
    out.flush()
    if not wait:
        return 0
    result = await handle.result()
    return _print_fleet_result(result, out)


def _budget(job: FleetJob) -> str:
    return f"max_cost ${job.max_cost:g}" if job.max_cost is not None else "no fleet budget"


def _print_fleet_result(result: dict[str, Any], out: TextIO) -> int:
    worst = 0
    for run, status in sorted(result.get("runs", {}).items()):
        out.write(f"  {run}: {status}\n")
        try:
            worst = max(worst, int(RunStatus(status).exit_code))
        except ValueError:
            worst = max(worst, 1)
    out.write(f"fleet cost ${result.get('cost_usd', 0.0):.4f}\n")
    return worst


async def schedule(
    address: str, namespace: str, path: Path, cron: str, schedule_id: str | None, out: TextIO
) -> str:
    """Create (or replace the spec and action of) a schedule that submits the fleet."""
    job = load_fleet(path)
    client = await connect(address, namespace)
    await ensure_search_attributes(client, namespace)
    sid = schedule_id or f"ralph-fleet-{job.fleet}"
    action = ScheduleActionStartWorkflow(
        FleetWorkflow.run, job, id=f"fleet-{job.fleet}", task_queue=job.task_queue
    )
    spec = ScheduleSpec(cron_expressions=[cron])
    try:
        await client.create_schedule(sid, Schedule(action=action, spec=spec))
        verb = "created"
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=Schedule(action=action, spec=spec))

        await client.get_schedule_handle(sid).update(update)
        verb = "updated"
    except RPCError as exc:
        raise UsageError(f"--cron {cron!r}: Temporal refused the schedule: {exc.message}") from None
    out.write(f"schedule {sid} {verb}: fleet {job.fleet} at {cron!r} (UTC)\n")
    return sid


# --- status, show, cancel, steer -----------------------------------------------------------


async def list_runs(client: Client, fleet: str | None) -> list[dict[str, Any]]:
    query = "WorkflowType = 'RalphRepo'"
    if fleet:
        query += f" AND RalphFleet = '{fleet}'"
    rows = []
    async for wf in client.list_workflows(query):
        sa = wf.search_attributes
        memo = await wf.memo()

        def first(name: str, sa: Any = sa) -> Any:
            value = sa.get(name)
            return value[0] if isinstance(value, list) and value else value

        status = first("RalphStatus") or memo.get("status") or "running"
        if wf.status is not None and wf.status.name in ("TERMINATED", "TIMED_OUT"):
            status = "error"
        rows.append(
            {
                "workflow_id": wf.id,
                "fleet": first("RalphFleet"),
                "repository": first("RalphRepository") or memo.get("repository"),
                "prompt": first("RalphPrompt") or memo.get("prompt"),
                "status": status,
                "iterations": first("RalphIterations") or 0,
                "cost_usd": first("RalphCost"),
                "temporal_status": wf.status.name if wf.status is not None else None,
                "started": wf.start_time.isoformat() if wf.start_time else None,
                "pr": memo.get("pr"),
            }
        )
    rows.sort(key=lambda r: (r["started"] or "", r["workflow_id"]))
    return rows


def print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    if not rows:
        out.write("no fleet runs\n")
        return
    head = ("WORKFLOW", "REPOSITORY", "PROMPT", "STATUS", "ITER", "COST")
    table = [head] + [
        (
            r["workflow_id"],
            r["repository"] or "?",
            r["prompt"] or "?",
            r["status"],
            str(r["iterations"]),
            "?" if r["cost_usd"] is None else f"${r['cost_usd']:.4f}",
        )
        for r in rows
    ]
    widths = [max(len(clean(str(row[c]))) for row in table) for c in range(len(head))]
    for row in table:
        out.write(
            "  ".join(clean(str(v)).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        )
        out.write("\n")


async def status(
    address: str, namespace: str, fleet: str | None, as_json: bool, out: TextIO
) -> None:
    client = await connect(address, namespace)
    rows = await list_runs(client, fleet)
    if as_json:
        json.dump(rows, out, indent=2)
        out.write("\n")
    else:
        print_table(rows, out)


async def show(address: str, namespace: str, workflow_id: str, as_json: bool, out: TextIO) -> None:
    client = await connect(address, namespace)
    handle = client.get_workflow_handle(workflow_id)
    try:
        desc = await handle.describe()
    except RPCError as exc:
        raise UsageError(
            f"no fleet workflow {workflow_id!r} ({exc.message}); `ralph fleet status` lists them"
        ) from None
    if desc.workflow_type == "RalphFleet":
        data: Any = await handle.query("status")
    else:
        state = await handle.query(RepoWorkflow.status)
        data = asdict(state) if isinstance(state, RepoState) else state
    if as_json:
        json.dump(data, out, indent=2)
        out.write("\n")
        return
    _print_show(workflow_id, data, out)


def _print_show(workflow_id: str, data: dict[str, Any], out: TextIO) -> None:
    if "runs" in data:
        out.write(f"fleet {workflow_id}: cost ${data['cost_usd']:.4f}")
        out.write(f" of ${data['max_cost']:g}\n" if data.get("max_cost") else "\n")
        for run, st in sorted(data["runs"].items()):
            out.write(f"  {run}: {st}  ${data['costs'].get(run, 0.0):.4f}\n")
        return
    cost = "?" if data["cost_usd"] is None else f"${data['cost_usd']:.4f}"
    out.write(
        f"{workflow_id}: {data['url']} ({data['prompt_name']}) — {data['status']}: "
        f"{clean(data['reason'])}\n  branch {data['branch']} from {data['base']}, run "
        f"{data['run_id']}, {len(data['iterations'])} iteration(s), {cost}\n"
    )
    if data.get("pr_url"):
        out.write(f"  pull request {data['pr_url']}\n")
    for rec in data["iterations"]:
        c = "?" if rec["cost_usd"] is None else f"${rec['cost_usd']:.4f}"
        out.write(
            f"  {rec['number']:>3}  {rec['outcome']:<10} {c:>9}  {clean(rec['summary'])}  "
            f"[{rec['worker']}]\n"
        )
    for g in data.get("guidance", []):
        out.write(f"  guidance #{g['id']}{' (kept)' if g['keep'] else ''}: {clean(g['text'])}\n")


async def cancel(address: str, namespace: str, workflow_id: str, out: TextIO) -> None:
    client = await connect(address, namespace)
    try:
        await client.get_workflow_handle(workflow_id).cancel()
    except RPCError as exc:
        raise UsageError(f"cannot cancel {workflow_id!r}: {exc.message}") from None
    out.write(
        f"cancel requested for {workflow_id}: the running iteration is interrupted, its work "
        "committed and pushed\n"
    )


async def steer(
    address: str, namespace: str, workflow_id: str, text: str, keep: bool, out: TextIO
) -> None:

    text = text.strip()
    if not text:
        raise UsageError("the guidance is empty; give the text (or - to read it from stdin)")
    if len(text) > GUIDANCE_LIMIT:
        raise UsageError(f"the guidance is {len(text)} characters; keep it under {GUIDANCE_LIMIT}")
    client = await connect(address, namespace)
    try:
        await client.get_workflow_handle(workflow_id).signal(RepoWorkflow.steer, args=[text, keep])
    except RPCError as exc:
        raise UsageError(f"cannot steer {workflow_id!r}: {exc.message}") from None
    out.write(f"guidance sent to {workflow_id}: its next iteration receives it\n")


def run(coro: Any) -> Any:
    """Run a command's coroutine; a RalphError comes out as it went in."""
    return asyncio.run(coro)
