"""docker-compose.yml: valid by the Compose specification, complete, healthy, restartable.

Docker does not run here; the file is checked against the Compose
specification's JSON schema (tests/compose/compose-spec.json, as shipped in the
docker-compose 1.29.2 package on PyPI, Apache-2.0), offline.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft201909Validator

from keel.formation import load_formation
from keel.settings import Settings
from keel.temporal import model_task_queues, task_queues
from worker._build import GRACEFUL_SHUTDOWN

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).parent / "compose" / "compose-spec.json"
CORE = {"temporal-postgresql", "temporal", "temporal-ui", "qdrant", "keel-postgres", "redis"}
KEEL = {"api", "worker"}
GPU = {"llm", "gpu-worker"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def _queues(command: list[str]) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == "--task-queue"]


def _seconds(duration: str) -> int:
    assert duration.endswith("s"), duration
    return int(duration.removesuffix("s"))


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    Draft201909Validator.check_schema(schema)  # the draft its `$schema` names
    validator = Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_every_part_runs_with_a_health_check_and_a_restart_policy(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == CORE | KEEL | GPU
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
    assert {n for n, s in services.items() if s.get("profiles") == ["gpu"]} == GPU
    assert {n for n, s in services.items() if "profiles" not in s} == CORE | KEEL


def test_services_start_after_what_they_need_is_healthy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            assert how == {"condition": "service_healthy"}, (name, needed)
            assert name in GPU or needed not in GPU, f"{name} would need the gpu profile"
    for name in KEEL | {"gpu-worker"}:
        assert {"temporal", "keel-postgres", "redis"} <= set(services[name]["depends_on"])


def test_workers_poll_their_queues_and_drain_before_they_are_killed(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    formation = load_formation(
        ROOT / "deploy" / "formation.yaml",
        env={"KEEL_STORE_URL": "postgresql://keel:keel@keel-postgres:5432/keel"},
    )
    # The queues the API (same formation, no queue named in the environment) starts
    # sessions on: those of the formation `keel`.
    queues = task_queues(Settings(), formation)
    assert (queues.sessions, queues.activities) == ("keel-sessions.keel", "keel-activities.keel")
    assert _queues(services["worker"]["command"]) == [queues.sessions, queues.activities]
    assert "KEEL_SESSIONS_TASK_QUEUE" not in services["api"]["environment"]
    # Only the GPU worker polls the local model's queue, so its calls run there.
    assert _queues(services["gpu-worker"]["command"]) == model_task_queues(formation)
    for name in ("worker", "gpu-worker"):
        grace = _seconds(services[name]["stop_grace_period"])
        assert grace > GRACEFUL_SHUTDOWN.total_seconds(), name
    for name in GPU:
        [device] = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"])


def test_keel_services_share_one_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in KEEL | {"gpu-worker"}:
        env = services[name]["environment"]
        assert env["KEEL_TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert env["KEEL_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["KEEL_STORE_URL"].startswith("postgresql://"), name
        assert "./deploy/formation.yaml:/etc/keel/formation.yaml:ro" in services[name]["volumes"]
    assert "KEEL_ADMIN_KEYS" in services["api"]["environment"]


def test_the_image_holds_every_package_of_the_distribution() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in packages:
        assert f"COPY {package} {package}\n" in dockerfile, package
    assert 'ENTRYPOINT ["keel"]' in dockerfile
