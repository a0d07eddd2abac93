import pytest

from tests.workflows.story import Story


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """One pretend repository per module: its runs are shared by the module's tests."""
    story = Story(tmp_path_factory.mktemp("runner"))
    yield story
    story.close()
