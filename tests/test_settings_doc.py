"""Settings are documented once, in `Settings`' fields: `.env.example` and the README's table are what
`python -m agent.settings_doc` generates from them, and `.env.example` loads back to the defaults."""

from __future__ import annotations

import pytest

from agent import settings_doc
from agent.settings import Settings


def test_every_setting_has_a_description_and_a_group():
    undocumented = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]
    assert not undocumented, f"give these fields a description=: {undocumented}"
    first = next(iter(Settings.model_fields.values()))
    assert isinstance(first.json_schema_extra, dict) and "section" in first.json_schema_extra


def test_the_committed_env_example_is_the_generated_one():
    assert settings_doc.ENV_EXAMPLE.read_text() == settings_doc.env_example(), "run: python -m agent.settings_doc"


def test_the_committed_readme_table_is_the_generated_one():
    readme = settings_doc.README.read_text()
    assert readme == settings_doc.readme_with_table(readme), "run: python -m agent.settings_doc"
    assert settings_doc.main(["--check"]) == 0


def test_the_env_example_lists_every_setting_at_its_default(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    listed = Settings.load(settings_doc.ENV_EXAMPLE)
    assert listed == Settings.load(None)
    lines = settings_doc.ENV_EXAMPLE.read_text().splitlines()
    assert {line.split("=")[0].lower() for line in lines if line and not line.startswith("#")} == set(
        Settings.model_fields
    )


def test_a_drifted_file_is_caught(tmp_path, monkeypatch):
    stale = tmp_path / ".env.example"
    stale.write_text(settings_doc.env_example().replace("PORT=7860", "PORT=8000"))
    monkeypatch.setattr(settings_doc, "ENV_EXAMPLE", stale)
    assert settings_doc.main(["--check"]) == 1
    assert settings_doc.main([]) == 0 and stale.read_text() == settings_doc.env_example()
    with pytest.raises(ValueError, match="markers"):
        settings_doc.readme_with_table("# a README without the table's markers\n")
