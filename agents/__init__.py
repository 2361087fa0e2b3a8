"""earlyexp agents: policies, rollouts and methods that learn from experience."""
