"""What a planner asks of a run beyond the schedule: power and energy, cost, and node failures."""
