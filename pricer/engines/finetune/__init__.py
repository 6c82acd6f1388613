"""Fine-tuning for the transformers engine: QLoRA on the train split, exact resume from checkpoints, adapters."""
