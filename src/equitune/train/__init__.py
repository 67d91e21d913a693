"""LoRA fine-tuning: base-model resolution, data preparation, the training loop, backends."""
