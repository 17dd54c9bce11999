"""Test-wide set-up and fixtures.

Fixtures:
  engine   (session)  the shared, warmed Engine(weights="random:0")
  server   (function) a real in-process server with the default test config
                      (tests.support.server.test_config); see running_server
                      for other configs.
"""

from __future__ import annotations

import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `from tests.support import ...` from any working directory
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def engine():
    from tests.support.server import shared_engine

    return shared_engine()


@pytest.fixture
def server(engine):
    from tests.support.server import running_server

    with running_server(engine=engine) as handle:
        yield handle
