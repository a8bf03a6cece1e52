"""A user's own Strategy (the base class of normlab.search) runs on the one search loop: the loop
stores every evaluation, dedups, feeds results back in proposal order, and a rerun resumes by
replay (nothing evaluated twice, the strategy's state rebuilt exactly)."""

import pytest

from normlab.runtime import Store
from normlab.search import BitString, Candidate, SearchError, Strategy, load_search, onemax, optimize


class HillClimber(Strategy):
    """Mutates the best bit string observed so far (a sample until one is observed)."""

    name = "hill"

    def __init__(self, restart: float = 0.1) -> None:
        self.restart = restart

    def settings(self):
        return {"restart": self.restart}

    def start(self, search):
        super().start(search)
        self.best = None
        self.observed = []

    def propose(self, n):
        space, rng = self.search.space, self.search.rng
        out = []
        for _ in range(n):
            fresh = self.best is None or rng.random() < self.restart
            make = (lambda: space.sample(rng)) if fresh else (lambda: space.mutate(self.best.arch, rng))
            found = self.search.fresh(make)
            if found is None:
                break
            out.append(found)
        return out

    def observe(self, evaluation):
        self.observed.append(evaluation.key)
        if evaluation.ok and (self.best is None or evaluation.scores["score"] > self.best.scores["score"]):
            self.best = evaluation


class Counting:
    def __init__(self):
        self.calls = []

    def __call__(self, bits):
        self.calls.append(bits)
        return onemax(bits)


def test_a_custom_strategy_runs_on_the_loop_with_store_and_resume(tmp_path):
    space, path = BitString(16), tmp_path / "s.sqlite"
    whole = HillClimber()
    ref = optimize(space, onemax, whole, budget=40, seed=3)
    assert ref.strategy == "hill" and len({e.key for e in ref.history}) == 40
    assert whole.observed == [e.key for e in ref.history]            # fed back in proposal order
    assert ref.best().scores["score"] > max(e.scores["score"] for e in ref.history[:5])   # it climbs

    first = Counting()
    part = optimize(space, first, HillClimber(), budget=25, seed=3, store=path, name="hill")
    assert [e.key for e in part.history] == [e.key for e in ref.history[:25]] and len(first.calls) == 25
    again, climber = Counting(), HillClimber()
    resumed = optimize(space, again, climber, budget=40, seed=3, store=path, name="hill")
    assert [e.key for e in resumed.history] == [e.key for e in ref.history]   # replay == uninterrupted
    assert len(again.calls) == 15 and climber.best.key == whole.best.key     # only the new ones ran
    with Store(path, readonly=True) as db:
        [stored] = load_search(db, "hill")
        assert stored.config["strategy"] == "hill" and stored.config["restart"] == 0.1
    assert [e.key for e in stored.history] == [e.key for e in ref.history]
    with pytest.raises(SearchError, match="batch=0"):
        optimize(space, onemax, HillClimber(), budget=4, batch=0)


def test_a_strategy_that_breaks_the_contract_gets_one_clear_error():
    class Repeats(Strategy):
        def propose(self, n):
            return [Candidate((0,) * 4, "0000")] * n

    with pytest.raises(SearchError, match="proposed '0000' again"):
        optimize(BitString(4), onemax, Repeats(), budget=3, batch=2)
    with pytest.raises(SearchError, match="not a normlab.search.Strategy"):
        optimize(BitString(4), onemax, object(), budget=3)
