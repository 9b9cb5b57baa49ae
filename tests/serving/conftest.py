import pytest


@pytest.fixture
def fleets(monkeypatch) -> list:
    """The fleet of each scenario run the test makes (the serving meter's), in order, so the test can read
    its counters (the in-system area, replicas' tokens)."""
    from simulator.features import serving

    kept, original = [], serving.Serving.start

    def start(self, sim, t0):
        original(self, sim, t0)
        kept.append(self.fleet)

    monkeypatch.setattr(serving.Serving, "start", start)
    return kept
