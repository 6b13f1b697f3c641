"""Models: the base model and every fine-tuned model and checkpoint in the adapter store."""
