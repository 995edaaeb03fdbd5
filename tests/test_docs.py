"""The README's configuration table matches the declared settings, and every CLEARCUT_ variable the
code reads is declared."""
import re

from clearcut import config
from tests.conftest import ROOT


def test_readme_config_table_is_current():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- config:start -->")[1].split("<!-- config:end -->")[0].strip()
    assert section == config.markdown_table(), "run `clearcut config` and paste it into README.md"


def test_every_variable_read_is_declared():
    used = set()
    for folder in ("clearcut", "app", "worker"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\b(CLEARCUT_[A-Z0-9_]+)\b", path.read_text()))
    not_settings = {"CLEARCUT_SETTINGS"}  # the Flask config key holding the effective settings
    undeclared = sorted(v for v in used - set(config.SETTINGS) - not_settings
                        if not v.startswith("CLEARCUT_TEST_") and not v.endswith("_"))
    assert not undeclared, f"declare these in clearcut/config.py: {undeclared}"
