import re

import pytest

from chat_assets.docs import ROOT, SECTIONS, main, with_reference


@pytest.mark.parametrize("name", SECTIONS)
def test_generated_references_match_the_code(name):
    path, _ = SECTIONS[name]
    page = (ROOT / path).read_text()
    assert with_reference(name, page) == page, "run: python -m chat_assets.docs --write"


def test_the_table_reference_names_every_table_once():
    page = (ROOT / "docs/tables.md").read_text()
    assert page.count("## `chat_queue_durations`\n") == 1


def test_every_page_the_readme_links_to_exists():
    readme = (ROOT / "README.md").read_text()
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert "docs/configuration.md" in linked
    assert sorted(p for p in linked if not (ROOT / p).exists()) == []
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert sorted(pages - linked) == []  # and no page that nothing links to


def test_help_says_how_to_use_the_command_and_an_unknown_option_is_refused(capsys):
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    assert "--record [FILE]" in shown and "## " not in shown  # the usage, not the references
    assert main(["--recrod"]) == 2
    refused = capsys.readouterr()
    assert refused.out == "" and "unknown option --recrod" in refused.err
