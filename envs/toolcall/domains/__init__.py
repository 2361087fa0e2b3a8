"""The simulated API domains of ToolCall: file system, bank, travel."""
