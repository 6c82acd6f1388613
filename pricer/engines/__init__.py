"""What prices an item: the Predictor protocol, the transformers engine and its fine-tuning, classic predictors, a served model; one run scored."""
