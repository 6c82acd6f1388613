"""The price task: product rows read and checked as items, their prompts, answers parsed, guesses scored."""
