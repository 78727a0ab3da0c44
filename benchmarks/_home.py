"""A throw-away store for a benchmark run: every script measures on a fresh FSML_HOME, never on yours."""
import os
import tempfile
from contextlib import contextmanager

STORE_KEYS = ("FSML_DB_URL", "FSML_STORE_URL")  # settings that would point a run away from its fresh home


@contextmanager
def throwaway_home(drop: tuple = STORE_KEYS):
    "A temporary folder as FSML_HOME, with the settings in `drop` unset; removed afterwards."
    with tempfile.TemporaryDirectory() as home:
        os.environ["FSML_HOME"] = home
        for key in drop:
            os.environ.pop(key, None)
        yield home
