"""A cloud adapter that cannot be set up says what to set, as a provider error (byoi turns it
into one line), never a raw SDK exception."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.base import AuthError


def test_aws_without_a_region_says_where_to_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.aws import AwsProvider

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(AuthError, match=r"no AWS region: set providers\.aws\.region"):
        AwsProvider({})


def test_gcp_without_credentials_says_how_to_give_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from providers.gcp import GcpProvider

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # not on GCE: no metadata server to ask
    with pytest.raises(AuthError, match="no Google Cloud credentials: set GOOGLE_APPLICATION"):
        GcpProvider({"project": "p"})


def test_a_file_that_is_not_a_database_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from pipeline.errors import UserError
    from pipeline.state.store import Store

    junk = tmp_path / "byoi.db"
    junk.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(UserError, match=r"cannot open the database .*Restore it from a backup"):
        Store(junk)
    assert junk.read_bytes() == bytes(range(256)) * 64  # left as it was
