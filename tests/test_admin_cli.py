"""``clearcut db|accounts|keys`` against a real database, as a subprocess."""
import os
import subprocess
import sys

from sqlalchemy import select

from clearcut.db import sessionmaker_for
from clearcut.db.models import ApiKey
from tests.conftest import ROOT


def run(url, *args):
    env = {**os.environ, "CLEARCUT_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "clearcut.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)


def test_key_lifecycle(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run(url, "db", "upgrade").returncode == 0
    created = run(url, "keys", "create", "--account", "shop", "--label", "importer")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("cc_live_")
    synthetic = run(url, "keys", "create", "--account", "shop", "--mode", "synthetic").stdout.strip().splitlines()[-1]
    assert synthetic.startswith("cc_test_")
    with sessionmaker_for(url)() as session:
        hashes = session.scalars(select(ApiKey.key_hash)).all()
    assert len(hashes) == 2 and secret not in hashes and all(len(h) == 64 for h in hashes)
    listing = run(url, "keys", "list", "--account", "shop")
    assert listing.returncode == 0 and "importer" in listing.stdout and secret not in listing.stdout
    fingerprint = listing.stdout.split()[0]
    assert run(url, "keys", "revoke", fingerprint).returncode == 0
    assert "revoked" in run(url, "keys", "list").stdout
    missing = run(url, "keys", "revoke", "fp_nope")
    assert missing.returncode == 2 and "key_not_found" in missing.stderr
    assert run(url, "accounts", "create", "other", "--email", "a@b.c").stdout.startswith("acct_")
