"""`crypto-pipeline ARGS` run in the test's process: exit code, stdout and stderr, with no .env and no
setting inherited from the developer's shell."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import pipeline.runtime.cli as cli_module
from pipeline.config import Settings, get_settings


@dataclass(frozen=True)
class Outcome:
    """What one command did."""

    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit {self.code}\n{self.out}{self.err}"


Cli = Callable[..., Outcome]


def in_process_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Cli:
    """A runner of commands in an empty directory: `run(*args, **settings)`; call `get_settings.cache_clear()`
    when done (the fixtures that use this do)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_module, "configure_logging", lambda *_args, **_kwargs: None)
    # A handler an earlier test's `configure_logging` left on the root logger may write to a stream that
    # test's capture has closed ("Logging error ... I/O operation on closed file" on stderr): none here.
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)

    def run(*args: str, **env: object) -> Outcome:
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        get_settings.cache_clear()
        capsys.readouterr()
        try:
            code = cli_module.main(list(args))
        except SystemExit as exc:  # argparse: usage errors and --help
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run
