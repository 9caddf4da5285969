"""Transfer progress as ``ctl status`` and ``sync --wait`` show it: the share of the work queued now."""

from __future__ import annotations

from oaiod.daemon.cli import _progress_numbers
from oaiod.daemon.ctl.present import jsonable
from oaiod.engine.context import Progress

MB = 2**20


def shown(progress: Progress) -> float:
    done, total, _text = _progress_numbers({"state": "syncing", "progress": jsonable(progress)})
    assert done is not None and total
    return done / total


def test_a_second_upload_starts_a_new_count() -> None:
    """Issue 14: a second 100 MB upload 10% done showed 55% (``done_bytes`` kept the first upload's bytes)."""
    progress = Progress()
    for _upload in range(2):
        progress.queued_uploads, progress.queued_upload_bytes = 1, 100 * MB
        progress.start("big.bin", 100 * MB)
        progress.advance(10 * MB)
        assert shown(progress) == 0.10
        progress.advance(90 * MB)
        progress.finish(True, 100 * MB)


def test_done_bytes_add_up_over_the_batches_of_one_queue() -> None:
    progress = Progress()
    progress.queued_downloads, progress.queued_download_bytes = 2, 40 * MB
    progress.start("a", 20 * MB)
    progress.advance(20 * MB)
    progress.finish(False, 20 * MB)
    progress.start("b", 20 * MB)
    progress.advance(10 * MB)
    assert shown(progress) == 0.75
    progress.reset()
    assert progress.done_bytes == 0 and progress.current_path == ""
