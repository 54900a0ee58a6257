"""warmup_engagement_actions_total counts what each inbox session found and did, once, labelled with the
receiving mailbox's provider family (what WarmupInboxPlacementLow and the placement panel group by).

A real worker on the time-skipping server, with the metrics interceptor and a Prometheus endpoint as
`python -m workers.run` wires them; the session activity is a stand-in reporting what a session found.
"""

from __future__ import annotations

import datetime as dt
import uuid

from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.helpers.operator_cli import free_port, scrape, total, value
from tests.helpers.workflows import skip_to, start_mailboxes
from tests.test_inbox_sessions import ENGAGED
from tests.test_mailbox_workflow import Recorder
from warmup import metrics
from warmup.config import load_settings
from warmup.models import (
    EngagementTotals,
    InboxSessionReport,
    InboxSessionRequest,
    PlacementCheckRequest,
    PlacementReport,
)
from warmup.workflow_ids import inbox_task_queue
from workers.sandbox import workflow_runner
from workflows.mailbox import MailboxWarmupWorkflow


@activity.defn(name="inbox_session")
async def google_inbox(req: InboxSessionRequest) -> InboxSessionReport:
    return InboxSessionReport(EngagementTotals(inbox=3, junk=1, rescued=1, read=4), family="google")


@activity.defn(name="placement_check")
async def no_placement(req: PlacementCheckRequest) -> PlacementReport:
    return PlacementReport()


async def test_each_session_counts_its_placements_and_actions_by_family(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    env, queue, port = time_skipping_env, f"em-{uuid.uuid4().hex[:8]}", free_port()
    runtime = metrics.runtime_for(
        load_settings({"WARMUP_METRICS_PORT": str(port), "WARMUP_METRICS_HOST": "127.0.0.1"})
    )
    assert runtime is not None
    instruments = metrics.Instruments(runtime.metric_meter, 10)
    client = await Client.connect(
        env.client.service_client.config.target_host,
        runtime=runtime,
        interceptors=[metrics.MetricsInterceptor(instruments)],
    )
    now = await env.get_current_time()
    await skip_to(env, dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC))
    async with (
        Worker(
            client,
            task_queue=queue,
            workflows=[MailboxWarmupWorkflow],
            activities=[Recorder().send_email],
            workflow_runner=workflow_runner("isolated"),
        ),
        Worker(client, task_queue=inbox_task_queue(queue), activities=[google_inbox, no_placement]),
    ):
        (h,) = await start_mailboxes(env.client, queue, [(61, ENGAGED)])
        await env.sleep(dt.timedelta(hours=23))  # the day's 4 sessions
        await h.terminate()
    samples = scrape(port)
    name = metrics.ENGAGEMENT.name
    for action, per_session in (("inbox", 3), ("junk", 1), ("rescued", 1), ("read", 4)):
        assert value(samples, name, action=action, family="google") == 4 * per_session
    assert total(samples, name, action="flagged") == 0 and total(samples, name, action="sessions") == 0
    assert total(samples, name) == 4 * 9, "every count once, all under the receiver's family"
