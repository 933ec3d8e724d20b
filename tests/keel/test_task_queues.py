"""Task queue names: today's for the formation `default`, the formation id's otherwise."""

from __future__ import annotations

import pytest

from keel.formation import Formation, formation_from_data
from keel.settings import Settings
from keel.temporal import task_queues
from worker._build import polled_queues


def _formation(id_: str | None = None, **extra: object) -> Formation:
    data: dict[str, object] = {
        "models": {"default": {"provider": "echo"}},
        "agents": [{"name": "assistant"}],
        **extra,
    }
    if id_ is not None:
        data["id"] = id_
    return formation_from_data(data, env={})


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No queue setting from the environment the tests run in."""
    for name in ("KEEL_SESSIONS_TASK_QUEUE", "KEEL_ACTIVITIES_TASK_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_default_formation_keeps_todays_names(env: pytest.MonkeyPatch) -> None:
    queues = task_queues(Settings(), _formation())
    assert (queues.formation, queues.sessions, queues.activities) == (
        "default",
        "keel-sessions",
        "keel-activities",
    )
    # Its sessions from before the change sit on its own queue: they stay its.
    assert queues.formationless_queues == ("keel-sessions",)
    assert task_queues(Settings(serve_legacy_queues=True), _formation()) == queues


def test_another_formation_s_names_carry_its_id(env: pytest.MonkeyPatch) -> None:
    queues = task_queues(Settings(), _formation("alpha"))
    assert (queues.sessions, queues.activities) == ("keel-sessions.alpha", "keel-activities.alpha")
    assert (queues.legacy_sessions, queues.legacy_activities) == (None, None)
    assert queues.formationless_queues == ("keel-sessions.alpha",)


def test_queues_named_in_the_environment_win(env: pytest.MonkeyPatch) -> None:
    env.setenv("KEEL_SESSIONS_TASK_QUEUE", "my-sessions")
    env.setenv("KEEL_ACTIVITIES_TASK_QUEUE", "my-activities")
    for formation in (_formation(), _formation("alpha")):
        queues = task_queues(Settings(), formation)
        assert (queues.sessions, queues.activities) == ("my-sessions", "my-activities")
        assert queues.formation == formation.id
    env.setenv("KEEL_SESSIONS_TASK_QUEUE", "")
    with pytest.raises(ValueError, match="sessions_task_queue"):
        Settings()


def test_a_formation_serving_legacy_queues_takes_over_their_formationless_sessions(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("KEEL_SERVE_LEGACY_QUEUES", "true")
    queues = task_queues(Settings(), _formation("keel"))
    assert (queues.sessions, queues.legacy_sessions) == ("keel-sessions.keel", "keel-sessions")
    assert (queues.activities, queues.legacy_activities) == (
        "keel-activities.keel",
        "keel-activities",
    )
    assert queues.owns("keel", "keel-sessions.keel")
    assert queues.owns(None, "keel-sessions")  # started before sessions carried a formation
    assert not queues.owns("beta", "keel-sessions")  # another formation's, wherever it runs
    assert not queues.owns(None, "keel-sessions.beta")
    assert queues.visibility_clause() == (
        "(KeelFormation = 'keel' OR (KeelFormation IS NULL"
        " AND TaskQueue IN ('keel-sessions.keel', 'keel-sessions')))"
    )
    without = task_queues(Settings(serve_legacy_queues=False), _formation("keel"))
    assert not without.owns(None, "keel-sessions")


def test_a_worker_polls_the_formation_s_queues_and_their_legacy_names(
    env: pytest.MonkeyPatch,
) -> None:
    gpu = {"gpu": {"provider": "echo", "task_queue": "keel-llm-gpu"}}
    formation = _formation("keel", models={"default": {"provider": "echo"}, **gpu})
    assert polled_queues(Settings(), formation) == [
        "keel-sessions.keel",
        "keel-activities.keel",
        "keel-llm-gpu",
    ]
    legacy = Settings(serve_legacy_queues=True)
    assert polled_queues(legacy, formation) == [
        "keel-sessions.keel",
        "keel-sessions",
        "keel-activities.keel",
        "keel-activities",
        "keel-llm-gpu",
    ]
    # docker-compose.yml's worker names the two queues; their legacy names come with them.
    assert polled_queues(legacy, formation, ["keel-sessions.keel", "keel-activities.keel"]) == [
        "keel-sessions.keel",
        "keel-sessions",
        "keel-activities.keel",
        "keel-activities",
    ]
    assert polled_queues(legacy, formation, ["keel-llm-gpu"]) == ["keel-llm-gpu"]
