"""Accounts, keys and job operations against real PostgreSQL/SQLite and a real SeaweedFS."""
import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select, text

from clearcut import accounts, jobs
from clearcut.context import Context
from clearcut.db import engine_for, sessionmaker_for, upgrade
from clearcut.db.models import ApiKey, Asset, Base, Job, Usage
from clearcut.errors import AuthError, NotFound
from clearcut.options import parse
from tests.conftest import encode_image, synthetic_scene


@pytest.fixture(scope="module")
def ctx(database_url, s3, model_dir):
    engine = engine_for(database_url)
    Base.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(database_url)
    return Context(db=sessionmaker_for(database_url), storage=s3.storage, database_url=database_url)


@pytest.fixture()
def account_key(ctx, request):
    with ctx.db.begin() as session:
        account = accounts.get_or_create_account(session, f"acme-{request.node.name}")
        key, secret = accounts.create_key(session, account)
    return account, key, secret


def test_keys_are_hashed_authenticated_and_revocable(ctx, account_key):
    account, key, secret = account_key
    assert secret.startswith("cc_live_") and len(secret) > 40
    with ctx.db() as session:
        stored = session.get(ApiKey, key.id)
        assert stored.key_hash != secret and secret not in (stored.fingerprint, stored.prefix)
        found, owner = accounts.authenticate(session, secret)
        assert found.id == key.id and owner.id == account.id
        with pytest.raises(AuthError) as err:
            accounts.authenticate(session, secret + "x")
        assert err.value.status == 401 and err.value.code == "invalid_api_key"
        with pytest.raises(AuthError) as err:
            accounts.authenticate(session, None)
        assert err.value.code == "missing_api_key"
    with ctx.db.begin() as session:
        accounts.revoke(session, key.fingerprint)
    with ctx.db() as session, pytest.raises(AuthError) as err:
        accounts.authenticate(session, secret)
    assert err.value.status == 403 and err.value.code == "revoked_api_key"


def test_inactive_account_is_refused(ctx, account_key):
    account, _, secret = account_key
    with ctx.db.begin() as session:
        session.merge(account).status = "inactive"
    with ctx.db() as session, pytest.raises(AuthError) as err:
        accounts.authenticate(session, secret)
    assert err.value.code == "account_inactive" and err.value.status == 403


def _count(ctx, model, **where):
    with ctx.db() as session:
        query = select(func.count()).select_from(model)
        for column, value in where.items():
            query = query.where(getattr(model, column) == value)
        return session.scalar(query)


def test_job_lifecycle_duplicate_delivery_and_cache(ctx, account_key):
    account, key, _ = account_key
    image, mask = synthetic_scene(320, 240, radius=60)
    data = encode_image(image, "PNG")
    options = parse({"model": "u2netp", "format": "png"})
    first = jobs.submit(ctx, account, key, data, "image/png", options, request_id="req_1")
    assert first.enqueue and first.job.status == "queued"
    with ctx.db() as session:
        original = session.get(Asset, first.job.input_asset_id)
    import hashlib
    assert original.storage_key == f"originals/{hashlib.sha256(data).hexdigest()}"
    assert ctx.storage.get(original.storage_key) == data

    assert jobs.process(ctx, first.job.id) == "succeeded"
    assert jobs.process(ctx, first.job.id) == "succeeded"  # duplicate delivery: nothing changes
    row = jobs.get(ctx, account.id, first.job.id)
    assert row.attempts == 1 and row.result["width"] == 320 and row.result_asset_id
    assert _count(ctx, Usage, job_id=row.id) == 1
    cutout = np.asarray(Image.open(io.BytesIO(ctx.storage.get(row.result_key))))
    alpha = cutout[:, :, 3] > 127
    assert (alpha & mask).sum() / (alpha | mask).sum() > 0.9

    again = jobs.submit(ctx, account, key, data, "image/png", options)
    assert not again.enqueue and again.job.status == "succeeded" and again.job.cache_hit
    assert again.job.result_key == row.result_key and again.job.result["width"] == 320
    forced = jobs.submit(ctx, account, key, data, "image/png", options, use_cache=False)
    assert forced.enqueue
    other = jobs.submit(ctx, account, key, data, "image/png", options.with_(format="webp"))
    assert other.enqueue and other.job.result_key != row.result_key


def test_bad_image_fails_without_charge(ctx, account_key):
    account, key, _ = account_key
    sub = jobs.submit(ctx, account, key, b"\x89PNG\r\n\x1a\n broken", "image/png", parse({"model": "u2netp"}))
    assert jobs.process(ctx, sub.job.id) == "failed"
    row = jobs.get(ctx, account.id, sub.job.id)
    assert row.error_code in ("corrupt_image", "invalid_image") and row.finished_at is not None
    assert _count(ctx, Usage, job_id=row.id) == 0


def test_other_accounts_jobs_are_not_found(ctx, account_key):
    account, key, _ = account_key
    sub = jobs.submit(ctx, account, key, encode_image(synthetic_scene(64, 48, 10)[0]), "image/png",
                      parse({"model": "u2netp"}))
    with ctx.db.begin() as session:
        stranger = accounts.get_or_create_account(session, "stranger")
    with pytest.raises(NotFound) as err:
        jobs.get(ctx, stranger.id, sub.job.id)
    assert err.value.status == 404
    assert _count(ctx, Job, id=sub.job.id) == 1


def test_retention_deletes_expired_objects_and_keeps_history(ctx, account_key):
    from datetime import timedelta

    from clearcut.jobs import retention
    from clearcut.db.models import utcnow

    account, key, _ = account_key
    data = encode_image(synthetic_scene(96, 64, 20)[0])
    sub = jobs.submit(ctx, account, key, data, "image/png", parse({"model": "u2netp"}))
    assert jobs.process(ctx, sub.job.id) == "succeeded"
    row = jobs.get(ctx, account.id, sub.job.id)
    assert retention.sweep(ctx) == 0 or ctx.storage.exists(row.result_key)
    later = utcnow() + timedelta(hours=25)
    assert retention.sweep(ctx, now=later) >= 2
    with ctx.db() as session:
        original = session.get(Asset, row.input_asset_id)
        assert original.deleted_at is not None
    assert not ctx.storage.exists(original.storage_key) and not ctx.storage.exists(row.result_key)
    assert jobs.get(ctx, account.id, sub.job.id).status == "succeeded"  # the job row keeps its history


def test_concurrent_submissions_of_one_image_share_one_original(ctx, account_key):
    from concurrent.futures import ThreadPoolExecutor

    account, key, _ = account_key
    data = encode_image(synthetic_scene(90, 70, 25)[0])
    options = parse({"model": "u2netp"})
    with ThreadPoolExecutor(6) as pool:
        subs = list(pool.map(lambda _: jobs.submit(ctx, account, key, data, "image/png", options), range(6)))
    assert len({s.job.id for s in subs}) == 6
    with ctx.db() as session:
        originals = session.scalars(select(Asset).where(Asset.account_id == account.id,
                                                        Asset.kind == "original")).all()
    assert len(originals) == 1 and {s.job.input_asset_id for s in subs} == {originals[0].id}


def test_result_key_changes_with_the_pipeline_revision(monkeypatch):
    """A deploy whose pipeline makes different pixels must not serve cutouts cached by the old one."""
    import clearcut.pipeline
    from clearcut.options import Options

    before = jobs.result_key("ab" * 32, Options())
    assert jobs.result_key("ab" * 32, Options()) == before
    monkeypatch.setattr(clearcut.pipeline, "REVISION", clearcut.pipeline.REVISION + 1)
    assert jobs.result_key("ab" * 32, Options()) != before
