"""Policy backends: local Hugging Face models, the tiny preset, HTTP servers, scripted."""
