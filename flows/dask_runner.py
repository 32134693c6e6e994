"""The dask task runner of backfills, with its resilience explicit instead of dask's defaults. Wiring only.

Two separate mechanisms keep a date alive when a dask worker fails:

* worker loss (a worker killed, OOM, node gone): the scheduler resubmits the worker's tasks elsewhere until a
  task has been on ``allowed_failures`` + 1 workers that died, then fails it with ``KilledWorker``. A local
  cluster gets ``orchestration.dask_allowed_failures``; an external scheduler reads its own configuration
  (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``, set in ``deploy/``): the runner checks it and warns.
* an exception escaping the Prefect task engine on a worker (e.g. the Prefect API unreachable): dask
  ``retries=`` (``orchestration.dask_task_retries``). Task errors proper (network, not yet published) are
  Prefect task states, retried by the task's own policy (``tasks.retry_only_retryable``).

The work is idempotent (products carry an input digest, versions are content-named), so a date run twice
because its first worker died yields the same single product.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

from bias_correction.config import Settings

LOG = logging.getLogger(__name__)


class BackfillDaskRunner(DaskTaskRunner):  # type: ignore[misc]
    """:class:`prefect_dask.DaskTaskRunner` that submits with dask ``retries=`` and checks the scheduler's
    ``allowed_failures`` (resubmission on worker loss) before the first task."""

    def __init__(self, *, dask_retries: int = 0, allowed_failures: int = 3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dask_retries, self.allowed_failures = dask_retries, allowed_failures
        self._checked = False

    def duplicate(self) -> BackfillDaskRunner:
        return type(self)(dask_retries=self.dask_retries, allowed_failures=self.allowed_failures,
                          address=self.address, cluster_class=self.cluster_class, cluster_kwargs=self.cluster_kwargs,
                          adapt_kwargs=self.adapt_kwargs, client_kwargs=self.client_kwargs,
                          performance_report_path=self.performance_report_path)

    def _check_scheduler(self) -> None:
        self._checked = True
        # a lambda travels by value: the scheduler need not import this module (prefect) to answer
        have = int(self.client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures))
        if have < self.allowed_failures:
            LOG.warning("dask scheduler %s resubmits a task after at most %d lost worker(s), the backfill expects %d: "
                        "set DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=%d on the scheduler",
                        self.client.scheduler.address, have, self.allowed_failures, self.allowed_failures)

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None,
               dependencies: Any = None) -> PrefectDaskFuture[Any]:
        # DaskTaskRunner.submit without a way to pass dask's retries=; the same steps with it.
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        if not self._checked:
            self._check_scheduler()
        parameters = self._optimize_futures(parameters)
        wait_for = self._optimize_futures(wait_for) if wait_for else None
        future = self.client.submit(task, parameters=parameters, wait_for=wait_for, dependencies=dependencies,
                                    return_type="state", retries=self.dask_retries)
        return PrefectDaskFuture[Any](wrapped_future=future, task_run_id=future.task_run_id)


def dask_runner(settings: Settings) -> BackfillDaskRunner:
    """A LocalCluster of worker processes by default; the external scheduler of ``orchestration.dask_scheduler``."""
    orch = settings.orchestration
    policy = {"dask_retries": orch.dask_task_retries, "allowed_failures": orch.dask_allowed_failures}
    if orch.dask_scheduler:
        return BackfillDaskRunner(address=orch.dask_scheduler, **policy)
    return BackfillDaskRunner(cluster_kwargs={"n_workers": orch.backfill_workers, "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None,
                                              "scheduler_kwargs": {"allowed_failures": orch.dask_allowed_failures}},
                              **policy)
