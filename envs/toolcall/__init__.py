"""EarlyExp/ToolCall-v0: multi-turn function calling against stateful API simulators."""
