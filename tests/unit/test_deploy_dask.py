"""deploy/: the compose stack and the Kubernetes DaskCluster agree with the config key that points at them."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bias_correction.config import ENV_PREFIX, Orchestration, Settings, _known_env_keys, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEY = "SSTBC_ORCHESTRATION__DASK_SCHEDULER"


def _env(items) -> dict[str, str]:
    return items if isinstance(items, dict) else {e["name"]: e.get("value") for e in items}


def test_the_scheduler_key_is_a_config_key() -> None:
    assert KEY in _known_env_keys(Settings, ENV_PREFIX)


def test_compose_workers_reach_the_scheduler_the_flows_are_pointed_at() -> None:
    services = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    address = services["worker"]["environment"][KEY]
    host, port = re.fullmatch(r"tcp://([\w-]+):(\d+)", address).groups()
    sched = services[host]  # the address names the scheduler service
    assert sched["entrypoint"][:2] == ["dask", "scheduler"] and sched["entrypoint"][sched["entrypoint"].index("--port") + 1] == port
    assert int(sched["environment"]["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"]) == Orchestration().dask_allowed_failures
    workers = services["dask-worker"]
    assert workers["entrypoint"][:3] == ["dask", "worker", address] and workers["deploy"]["replicas"] == 2
    assert "PREFECT_API_URL" in workers["environment"]
    assert workers["volumes"] == services["worker"]["volumes"]  # the same model store


def test_kubernetes_daskcluster_service_is_what_the_prefect_worker_uses() -> None:
    cluster = yaml.safe_load((DEPLOY / "k8s" / "dask-cluster.yaml").read_text())
    assert (cluster["apiVersion"], cluster["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    name, ns = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    port = next(p["port"] for p in cluster["spec"]["scheduler"]["service"]["ports"] if p["name"] == "tcp-comm")
    sched = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    assert sched["command"][:2] == ["dask", "scheduler"] and sched["command"][sched["command"].index("--port") + 1] == str(port)
    assert int(_env(sched["env"])["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"]) == Orchestration().dask_allowed_failures
    assert cluster["spec"]["worker"]["spec"]["containers"][0]["command"][:2] == ["dask", "worker"]
    worker = next(d for d in yaml.safe_load_all((DEPLOY / "k8s" / "worker.yaml").read_text())
                  if d and d["kind"] == "Deployment")
    env = _env(worker["spec"]["template"]["spec"]["containers"][0]["env"])
    assert env[KEY] == f"tcp://{name}-scheduler.{ns}.svc:{port}"  # the operator's Service: <name>-scheduler


def test_example_config_regions_block_loads(tmp_path: Path) -> None:
    text = (DEPLOY / "sstbc.example.toml").read_text()
    single = load_settings(DEPLOY / "sstbc.example.toml")
    assert single.region_names == ["scs"]
    # the commented [[regions]] example in place of [region]
    block = re.search(r"\n(# \[\[regions\]\]\n(?:# .*\n)+)", text).group(1)
    multi = re.sub(r"\[region\]\n(?:\w+ = .*\n)+", "", text).replace(block, re.sub(r"^# ", "", block, flags=re.M))
    (tmp_path / "m.toml").write_text(multi)
    s = load_settings(tmp_path / "m.toml")
    assert s.region_names == ["scs", "luzon"] and s.for_region("luzon").model_id == "convgru"
