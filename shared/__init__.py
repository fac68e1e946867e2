"""What serving and training both need: artifact format, base model, merge, compression, config."""
