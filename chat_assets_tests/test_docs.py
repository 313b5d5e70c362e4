from pathlib import Path

from chat_assets.docs import with_references

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_table_reference_matches_the_declarations():
    text = README.read_text()
    assert with_references(text) == text, "run: python -m chat_assets.docs --write"
    assert "### `chat_queue_durations`" in text
