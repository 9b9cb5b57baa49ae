"""The registry contract: every built-in name resolves, options are validated by the policy, and a
policy registered in a user's own module is usable by naming it in a scenario."""

import re
from pathlib import Path

import pandas as pd
import pytest

from simulator.errors import CapsimError
from simulator.policies.base import Policy
from simulator.policies.builtin import BUILTIN
from simulator.policies.registry import policy_class, register_policy
from tests.helpers import run_jobs

POLICIES_DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


@register_policy("test-largest-first")
class LargestFirst(Policy):
    """A user's policy: biggest job first, greedy."""

    def order(self, now):
        return sorted(self.queue.values(), key=lambda j: (-j.gpus, j.submit))


def test_every_builtin_name_resolves():
    for name in BUILTIN:
        assert policy_class(name).name == name


def test_builtin_names_only_the_package_policies_and_the_docs_table_lists_them_all():
    assert "fifo" in BUILTIN and "test-largest-first" not in BUILTIN  # a test's own policy is not built in
    table = POLICIES_DOC.read_text()
    assert set(re.findall(r"^\| `([a-z-]+)` \|", table, flags=re.M)) == set(BUILTIN)


def test_a_policy_registered_in_a_test_module_runs_from_a_scenario(tmp_path):
    # One 4-GPU node. a (4 GPUs, 0-10) runs first; at 10 both b (1 GPU) and c (4 GPUs) wait and the
    # user's policy starts the larger c at 10 (until 20), then b at 20.
    jobs = pd.DataFrame({"job_id": ["a", "b", "c"], "submit_time": [0, 1, 2], "gpus": [4, 1, 4],
                         "duration": [10, 10, 10]})
    out = run_jobs(jobs, pools=((1, 4),), policy="test-largest-first").jobs.set_index("job_id")
    assert out["start_time"].to_dict() == {"a": 0.0, "b": 20.0, "c": 10.0}


def test_unknown_option_names_the_key(tmp_path):
    jobs = pd.DataFrame({"job_id": ["a"], "submit_time": [0], "gpus": [1], "duration": [1]})
    with pytest.raises(CapsimError, match="scheduler.backfil_depth"):
        run_jobs(jobs, policy="easy-backfill", backfil_depth=3)
    with pytest.raises(CapsimError, match="scheduler.estimates.sigma"):
        run_jobs(jobs, policy="sjf", estimates={"error": "lognormal", "sigma": -1})
