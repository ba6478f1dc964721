"""Progress bars that render where they can, and a summary line where they cannot.

In a terminal or a live notebook, `bar` is `tqdm.auto.tqdm`. In a headless run (the notebooks
executed by `helpers.course.runner` and papermill) a stored bar would freeze at its first frame
("0%|"), so there `bar` draws nothing and the code prints its own summary lines instead (the
training loop prints one line per epoch). The runner marks a headless kernel by setting
`HEADLESS_ENV`; it also switches off the Hugging Face libraries' own bars.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

HEADLESS_ENV = "DRYWALL_HEADLESS"


def headless() -> bool:
    """True in a kernel started by the headless notebook runner."""
    return os.environ.get(HEADLESS_ENV) == "1"


def bar(iterable: Iterable[Any] | None = None, enabled: bool = True, **kwargs: Any):
    """`tqdm.auto.tqdm(iterable, **kwargs)`, drawn only when `enabled` and not headless."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled or headless(), **kwargs)


def quiet_library_bars() -> None:
    """Switch off the Hugging Face libraries' own bars ("Loading weights", "Writing model
    shards") in this process: a command line prints its own lines, and the bench loads and
    saves models many times."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging

    disable_progress_bars()
    logging.disable_progress_bar()
