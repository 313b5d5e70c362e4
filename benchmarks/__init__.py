"""Benchmarks: figures, not tests. Each runs as a module from the repository's root,
`.venv/bin/python -m benchmarks.NAME`, where the tests' support code (`chat_assets_tests`, which
is not installed) can be imported too."""
