"""Fixtures of the imgnorm Python package tests. Run with Debian's python3 and the built package on
PYTHONPATH (ctest does: PYTHONPATH=build/python):

    PYTHONPATH=build/python /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python

Environment: IMGNORM_CLI (the CLI to compare with), IMGNORM_SOURCE_DIR, IMGNORM_PY_WORK (cached
datasets and temporary folders; default build/tests/python-work)."""
import os
import shutil

import pytest

import util


def pytest_configure(config):
    # Temporary folders under the work folder (in the build tree), not /tmp.
    if not config.option.basetemp:
        base = os.path.join(util.WORK, "tmp")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(util.WORK, exist_ok=True)
        config.option.basetemp = base


def pytest_report_header(config):
    import imgnorm

    return [f"imgnorm {imgnorm.__version__} from {os.path.dirname(imgnorm.__file__)}",
            f"CLI {util.CLI}", f"work {util.WORK}"]


@pytest.fixture(scope="session", autouse=True)
def _check_cli():
    assert os.access(util.CLI, os.X_OK), f"the CLI is not built: {util.CLI} (set IMGNORM_CLI)"


@pytest.fixture(scope="session")
def flowers():
    return util.FLOWERS


@pytest.fixture(scope="session")
def photos():
    return util.photos(60)


@pytest.fixture(scope="session")
def mixed():
    return util.mixed()


@pytest.fixture(scope="session")
def photo_stats(tmp_path_factory, photos):
    """The CLI's stats of photos() at size 32 (and its mean image): (stats.json path, mean.npy)."""
    d = tmp_path_factory.mktemp("photo-stats")
    path, mean = str(d / "stats.json"), str(d / "mean.npy")
    util.cli("stats", photos, "--size", 32, "-o", path, "--mean-image", mean, "-q")
    return path, mean
