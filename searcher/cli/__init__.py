"""The `searcher` command: parsing (main), one function per command (commands), and what it prints while a study
runs (progress) and after (leaderboard). The top of the package: it calls every stage and nothing calls it."""

from searcher.cli.entry import main  # noqa: F401 - the console script `searcher = searcher.cli:main`
