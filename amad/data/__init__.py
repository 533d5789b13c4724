"""Data: the synthetic shapes generator, manifest / VQAv2 readers, answers and the torch dataset."""
