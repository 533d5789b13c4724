"""The named choices the losses accept; torch-free, so ``params.yaml`` is checked without loading torch."""

AMAD_VARIANTS = ("kl", "mse", "token", "projection")
MAX_PROJECTION_FEATURES = 4096  # q * k of the largest map AMAD's projection variant accepts
HEAD_MISMATCH_POLICIES = ("truncate", "mean_pool")  # one-to-one KD with fewer student heads
RELATIONS = ("qq", "kk", "vv")  # MiniLM relations
TEMPERATURE_SCHEDULES = ("constant", "linear", "cosine", "learned")  # AMAD alignment temperature over training
