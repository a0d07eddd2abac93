import pytest

from tests.native_stack import DEFAULT_ADMIN_DSN, migrated_template
from tests.workflows.act import Toolbox
from tests.workflows.story import Story


@pytest.fixture(scope="session")
def toolbox() -> Toolbox:
    """The runner's user, act, Node, uv, the docker stand-in and the jobs' shared venv (each
    job's Install step then syncs it in about a second instead of building it)."""
    return Toolbox.prepare()


@pytest.fixture(scope="module")
def story(toolbox):
    """One pretend repository per module: its runs are shared by the module's tests."""
    story = Story(toolbox, migrated_template(DEFAULT_ADMIN_DSN))
    yield story
    story.close()
