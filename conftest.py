"""Loads the grading plugin: options (--solution, --db, --kata-seed, --kata-tier, --kata-json),
fixtures and the scorecard. See harness/grading/plugin.py."""

pytest_plugins = ["harness.grading.plugin"]
