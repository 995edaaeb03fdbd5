"""The docs match the code: the README's configuration table and the declared settings, every CLEARCUT_
variable the code reads is declared, and every relative link and picture exists."""
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


def test_relative_links_and_pictures_in_the_docs_exist():
    """Every relative link or picture in README.md and docs/*.md names a file of the repository."""
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if not path or re.match(r"[a-z]+:", path):
                continue
            if not (page.parent / path).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing
