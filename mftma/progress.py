"""Progress bars: one helper for every bar of the package, shown only on a terminal.

Bars redrawn into a redirected log fill it with control characters, so :func:`progress_bar` shows a
bar only when it is enabled *and* its stream (standard error) is a terminal.
"""
from __future__ import annotations


def progress_bar(iterable=None, *, enabled: bool = True, **kwargs):
    """A ``tqdm`` bar over ``iterable`` (or a manual one), hidden unless enabled and on a terminal.

    Parameters
    ----------
    iterable : iterable, optional
        What to iterate over; omit it for a bar updated with ``.update()``.
    enabled : bool
        False hides the bar (e.g. ``--no-progress``).
    **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``unit``, ...).

    Returns
    -------
    tqdm.tqdm
        A bar, or a disabled one that draws nothing but still iterates and counts.
    """
    from tqdm.auto import tqdm

    # tqdm's disable=None: disabled when the output stream is not a terminal.
    return tqdm(iterable, disable=None if enabled else True, **kwargs)
