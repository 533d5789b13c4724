"""Generation for the generative tasks: amad's own greedy / beam-search loop over a decoder state."""
