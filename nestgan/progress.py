"""Progress bars for the long loops (Inception features, generating images): rate and ETA on a terminal,
nothing in logs, pipes or tests."""

from __future__ import annotations

from tqdm import tqdm


def image_progress(total: int, desc: str, enabled: bool | None = None) -> tqdm:
    """A bar on stderr counting images; `enabled` None: only when stderr is a terminal.

    Use as a context manager and call .update(number_of_images) after each batch.
    """
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled is None else not enabled,
                dynamic_ncols=True)
