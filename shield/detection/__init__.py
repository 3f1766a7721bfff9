"""Detection logic shared by workers and producer: heuristics, hybrid decisions, allowlists, rollout arms."""
