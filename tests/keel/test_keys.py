"""API keys from settings and keys files, `keel keys new`, and the loopback-only rule."""

from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from keel.keys import ApiKey, KeyConfigError, KeyRing, digest, load_keys, new_key
from keel.settings import Settings

KEEL = [sys.executable, "-m", "keel.cli"]
LONG = "k" * 20


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(data_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_env_keys_are_kept_as_digests_with_roles_and_tenants(tmp_path: Path) -> None:
    ring = load_keys(
        _settings(tmp_path, admin_keys=f"{LONG}a", client_keys=f" {LONG}b@acme , ,{LONG}c")
    )
    assert len(ring) == 3 and ring.enabled
    admin, acme, plain = (ring.match(f"{LONG}{x}") for x in "abc")
    assert admin is not None and (admin.role, admin.tenant) == ("admin", None)
    assert acme is not None and (acme.role, acme.tenant) == ("client", "acme")
    assert plain is not None and plain.name == f"client-{digest(LONG + 'c')[:8]}"
    assert ring.match(LONG) is None and ring.match("") is None
    assert LONG not in repr(vars(ring))  # only digests are kept


def test_no_keys_means_dev_mode(tmp_path: Path) -> None:
    assert not load_keys(_settings(tmp_path)).enabled


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"admin_keys": "short"}, "KEEL_ADMIN_KEYS: entry 1 is shorter than 16"),
        ({"client_keys": f"{LONG}@bad tenant"}, "KEEL_CLIENT_KEYS: entry 1: the tenant"),
        ({"admin_keys": LONG, "client_keys": LONG}, "listed more than once"),
    ],
)
def test_bad_env_keys_are_refused_without_quoting_them(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    with pytest.raises(KeyConfigError) as caught:
        load_keys(_settings(tmp_path, **values))
    assert message in str(caught.value) and LONG not in str(caught.value)


@pytest.mark.parametrize("dump", [yaml.safe_dump, json.dumps])
def test_a_keys_file_holds_only_digests(tmp_path: Path, dump: object) -> None:
    key = new_key()
    entries = [
        {"name": "web", "role": "client", "tenant": "acme", "sha256": digest(key)},
        {"name": "ops", "role": "admin", "sha256": digest(LONG)},
    ]
    path = tmp_path / "keys"
    path.write_text(dump(entries))  # type: ignore[operator]
    ring = load_keys(_settings(tmp_path, keys_file=path))
    assert ring.match(key) == ApiKey(name="web", role="client", tenant="acme", sha256=digest(key))
    assert ring.match(LONG) is not None and ring.match(LONG).name == "ops"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{name: x}", "must be a list"),
        ("- {name: x, role: root, sha256: " + "0" * 64 + "}", "entry 0 (role)"),
        (f"- {{name: x, role: admin, sha256: {LONG}}}", "entry 0 (sha256)"),
        ("- [", "not valid YAML or JSON"),
    ],
)
def test_a_bad_keys_file_names_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(text)
    with pytest.raises(KeyConfigError) as caught:
        load_keys(_settings(tmp_path, keys_file=path))
    assert message in str(caught.value) and LONG not in str(caught.value)
    with pytest.raises(KeyConfigError, match="No such file"):
        load_keys(_settings(tmp_path, keys_file=tmp_path / "missing"))


def test_matching_compares_every_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [ApiKey(name=f"k{i}", role="client", sha256=digest(f"{LONG}{i}")) for i in range(3)]
    compared: list[bytes] = []

    def compare(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", compare)
    assert KeyRing(keys).match(f"{LONG}0") == keys[0]
    assert len(compared) == 3  # no early exit on the first match


def test_keel_keys_new_prints_a_key_and_its_file_line() -> None:
    made = subprocess.run(
        [*KEEL, "keys", "new", "--role", "admin", "--tenant", "acme"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = made.stdout.splitlines()
    key = lines[0].split()[-1]
    entry = yaml.safe_load(next(line for line in lines if "sha256:" in line and "{" in line))
    assert KeyRing([ApiKey.model_validate(entry[0])]).match(key) is not None
    assert entry[0]["role"] == "admin" and entry[0]["tenant"] == "acme"
    assert f"KEEL_ADMIN_KEYS={key}@acme" in made.stdout


def test_keel_api_refuses_an_open_address_without_keys(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_DATA_DIR"] = str(tmp_path)
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        refused = subprocess.run(
            [*KEEL, "api", "--host", host], capture_output=True, text=True, timeout=60, env=env
        )
        assert refused.returncode == 2
        assert "without API keys" in refused.stderr and "KEEL_ADMIN_KEYS" in refused.stderr
    env["KEEL_ADMIN_KEYS"] = "x"
    broken = subprocess.run([*KEEL, "api"], capture_output=True, text=True, timeout=60, env=env)
    assert broken.returncode == 2 and "KEEL_ADMIN_KEYS" in broken.stderr
