"""Shared plumbing of the DVC stage scripts: one-line errors, no traceback, non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable

from amad.config.params import Params, load_params
from amad.errors import AmadError


def run_stage(main: Callable[[Params], None], params_path: str = "params.yaml") -> None:
    """Validate the whole params file, then run ``main``; user errors exit 2 with one line."""
    try:
        main(load_params(params_path))
    except AmadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: the next run resumes from the last epoch checkpoint", file=sys.stderr)
        sys.exit(130)
