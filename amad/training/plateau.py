"""Training to a validation plateau: the epoch count is a cap, not a guess.

After each epoch the validation metric (the task's primary metric, higher is better) is compared
with the best so far. ``patience`` epochs without a gain make a plateau. Under ``schedule:
plateau`` the learning rate (constant after the warm-up) is then multiplied by ``lr_factor``, up to
``max_reductions`` times; the plateau after the last reduction ends the run. Under ``schedule:
cosine`` (warm-up, then cosine to zero at ``epochs``) a plateau ends the run. ``epochs`` caps both.
A run that a plateau ended keeps the weights of its best epoch; a run that reached the cap keeps
its last (under cosine the lowest learning rate's: on the default profile, picking the best
validation epoch instead moved one student's test accuracy by 1.3 points on a 0.1-point validation
difference). A run that reached the cap still rising, by ``RISING`` or more over its last
``RISING_EPOCHS`` epochs with its best epoch the last, says so (``still_improving``: raise ``epochs``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

IMPROVED, WAIT, REDUCE, STOP = "improved", "wait", "reduce", "stop"
RISING = 0.005  # a gain of the validation metric (half a point) ...
RISING_EPOCHS = 3  # ... over this many last epochs: still improving at the cap


@dataclass
class Plateau:
    patience: int  # epochs without a validation gain that make a plateau (0: never stop early)
    reduce_lr: bool  # schedule plateau: a plateau first lowers the learning rate
    max_reductions: int
    best: float | None = None
    best_epoch: int = 0  # 1-based; 0: none yet
    waited: int = 0
    reductions: int = 0
    stopped: bool = False  # the plateau ended the run

    def update(self, epoch: int, value: float) -> str:
        """Record epoch ``epoch``'s (1-based) validation ``value``; what the run does next."""
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.waited = value, epoch, 0
            return IMPROVED
        self.waited += 1
        if self.patience == 0 or self.waited < self.patience:
            return WAIT
        self.waited = 0
        if self.reduce_lr and self.reductions < self.max_reductions:
            self.reductions += 1
            return REDUCE
        return STOP

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def still_rising(values: list[float]) -> bool:
    """The last epoch is the best, ``RISING`` above the epoch ``RISING_EPOCHS`` before it (or the first)."""
    if len(values) < 2 or values[-1] < max(values):
        return False
    return values[-1] - values[max(0, len(values) - 1 - RISING_EPOCHS)] >= RISING


def ending(plateau: Plateau, values: list[float], cap: int, metric: str) -> dict:
    """How a run ended (``values``: its validation metric per epoch), for the model's record and
    ``metrics/training.json``."""
    epochs_run, stopped = len(values), plateau.stopped
    return {
        "epochs_run": epochs_run,
        "epochs_cap": cap,
        "best_epoch": plateau.best_epoch,
        f"best_val_{metric}": plateau.best,
        "stopped": "plateau" if stopped else "cap",
        "lr_reductions": plateau.reductions,
        "still_improving": not stopped and still_rising(values),
    }
