"""The offline demo flow: stand-ins up, training flow, daily flow, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from bias_correction import demo as demo_lib
from flows.daily import daily_correction, training


@flow(name="sstbc-demo")
def demo(workdir: str, twin_seed: int | None = None) -> dict[str, Any]:
    plan = demo_lib.DemoPlan() if twin_seed is None else demo_lib.DemoPlan(twin_seed=twin_seed)
    root = Path(workdir)
    with demo_lib.stand_in_upstream(root, plan) as server:
        settings = demo_lib.demo_settings(root, server.oisst_https_base, server.hycom_ncss_base, plan)
        payload = settings.model_dump(mode="json")
        trained = training(payload, plan.train_start, plan.train_end)
        # the version just trained (a rerun in an old workdir leaves the earlier one as `current`)
        version = trained["export"]["version"]
        # the service's days before the demo run: corrected, published, verified
        live_runs = [daily_correction({**payload, "model_version": version}, day, verify=True)
                     for day in plan.live_days()]
        daily = daily_correction({**payload, "model_version": version}, plan.run_day, verify=True)
    floor = demo_lib.oracle_floor(settings, plan)
    live = demo_lib.live_verification(settings, plan, version)
    edges = demo_lib.edge_band([r.get("metrics") for r in (*live_runs, daily)], settings.grid_halo_cells)
    package = demo_lib.package_record(settings, version, list(range(1, settings.lead_days + 1)))
    return demo_lib.summary(plan, trained, daily, floor, live, edges, package)
