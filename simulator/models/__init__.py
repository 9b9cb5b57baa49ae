"""Per-run models, what a planner asks of a run beyond the schedule: power and energy per pool, the
cost of the simulated period, and node failures. The engine and the run use them; they sit below the
engine and import only the cluster and the performance model's profiles."""
