"""Error lines that leave the pod mask credentials: URL user-info of any shape, DSN and key=value
passwords, and every value the runtime read from a mounted Secret (issue 21, L2)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from application_builders import Kubelet, binding_data

from oneiric_runtime import AckState, Runtime, Slot
from oneiric_runtime.acks import one_line
from oneiric_runtime.redaction import forget_secrets, remember_secret

SLOT = "adapter/cache"


@pytest.fixture(autouse=True)
def no_remembered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("cannot connect to redis://:pa/ss@h:6379/0", "pa/ss"),
        ("cannot connect to redis://u:p@ss@h:6379", "p@ss"),
        ("cannot connect to postgresql://app:s3cr/et@db.shop:5432/app?sslmode=require", "s3cr/et"),
        ("connection failed: host=db port=5432 user=app password=hunter22 dbname=shop", "hunter22"),
        ("connection failed: host=db user=app password='with space' dbname=shop", "with space"),
        ("bad DSN mysql://root:toor1234@db/x?charset=utf8", "toor1234"),
        ("GET https://api?api_key=abcd1234&x=1 failed", "abcd1234"),
        ('config {"user": "app", "password": "hunter22"} refused', "hunter22"),
        ("auth failed, token: eyJhbGciOi.abc", "eyJhbGciOi.abc"),
    ],
)
def test_credentials_in_urls_dsns_and_pairs_are_masked(line: str, secret: str) -> None:
    masked = one_line(line)
    assert secret not in masked, masked
    assert "***" in masked
    assert masked.split()[0] == line.split()[0]  # the rest of the message stays readable


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("to redis://:pa/ss@h:6379/0 failed", "to redis://***@h:6379/0 failed"),
        ("to redis://u:p@ss@h failed", "to redis://***@h failed"),
    ],
)
def test_user_info_is_masked_up_to_the_last_at_sign(line: str, expected: str) -> None:
    assert one_line(line) == expected


def test_a_line_without_credentials_is_left_as_it_is() -> None:
    # Positive control for the masking above: nothing to mask, nothing changed.
    line = "cannot connect to redis://redis.shop:6379/0: Connection refused (user app, 3 tries)"
    assert one_line(line) == line


def test_values_read_from_secrets_are_masked_wherever_they_appear() -> None:
    line = "FATAL: password authentication failed: password 'bad-hunter2' for user app (bad-hunter2)"
    assert "bad-hunter2" in one_line(line)  # positive control: not a pattern the other rules catch
    remember_secret("bad-hunter2")
    remember_secret("abc")  # too short to mask without masking half of every message
    masked = one_line(line + " url redis://x/bad-hunter2 and bad%2Dhunter2 abc")
    assert "bad-hunter2" not in masked and "abc" in masked, masked
    assert one_line("quoted: bad%2Fhunter") == "quoted: bad%2Fhunter"
    remember_secret("bad/hunter")
    assert one_line("quoted: bad%2Fhunter") == "quoted: ***"


@pytest.fixture
async def runtime(kubelet: Kubelet, tmp_path: Path) -> AsyncIterator[Runtime]:
    secrets = tmp_path / "secrets"
    (secrets / "cache-creds").mkdir(parents=True)
    (secrets / "cache-creds" / "password").write_text("bad-hunter2\n")
    kubelet.project(binding_data("memory", "app_providers:HealthyStore", {"name": "old"}))
    slot = Slot(folder=kubelet.folder, secrets=secrets)
    started = await Runtime({SLOT: slot}, allow=["app_providers"]).astart()
    yield started
    await started.astop()


async def test_the_acknowledgement_never_echoes_a_secret_the_runtime_read(
    runtime: Runtime, kubelet: Kubelet
) -> None:
    data = binding_data(
        "postgres", "app_providers:echo_password", {}, secrets={"password": ("cache-creds", "password")}
    )
    kubelet.project(data)
    await runtime.refresh()
    status = runtime.status(SLOT)
    assert status is not None and status.digest == data["digest"] and status.state is AckState.FAILED
    assert "password authentication failed" in status.error  # the provider's own error got through
    assert "bad-hunter2" not in status.error, status.error
    assert "bad-hunter2" not in str(runtime.acks())
