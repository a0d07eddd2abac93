import pytest

from machine_learning.datasets import make_battle_data
from machine_learning.simulator import Scenario


@pytest.fixture(scope="session")
def small_battles():
    data = make_battle_data(8_000, Scenario.RANDOM, seed=0, n_test=4_000)
    return data.train, data.test
