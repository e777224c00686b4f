"""README.md's Python blocks compile, and LogListener logs transitions."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from fluxgate import CircuitBreaker
from fluxgate.listeners import LogListener
from fluxgate.trippers import FailureStreak

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_compile():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 9
    for i, code in enumerate(blocks):
        compile(code, f"README.md block {i}", "exec")


def test_log_listener(caplog, clock):
    cb = CircuitBreaker(name="logged", tripper=FailureStreak(1), clock=clock, listeners=[LogListener()])
    with caplog.at_level(logging.INFO, logger="fluxgate"):
        try:
            cb.call(lambda: 1 / 0)
        except ZeroDivisionError:
            pass
    (rec,) = [r for r in caplog.records if r.name == "fluxgate"]
    assert rec.levelno == logging.WARNING
    assert "circuit 'logged': closed → open (FailureStreak(1) held: 1 of 1 calls failed" in rec.getMessage()
    assert rec.new_state == "open" and rec.circuit_name == "logged"
