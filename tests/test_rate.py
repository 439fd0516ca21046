"""Stage summaries give a rate a reader can use: s/image below one image a second, never "0.0 images/s"."""
from collections import Counter

from pipeline.annotate_run import AnnotatorSummary
from pipeline.ingest import Summary


def test_a_slow_annotator_is_reported_in_seconds_per_image():
    slow = AnnotatorSummary("seg", shards=1, images=3, annotated=3, seconds=12.0).line()
    assert "12.0 s, 4.0 s/image" in slow and "images/s" not in slow
    fast = AnnotatorSummary("seg", shards=1, images=30, annotated=30, seconds=12.0).line()
    assert "12.0 s, 2.5 images/s" in fast
    assert "no rate (no images)" in AnnotatorSummary("seg", shards=1, already_done=1, seconds=0.2).line()


def test_a_slow_ingest_is_reported_in_seconds_per_image():
    line = Summary("sample", Counter(train=2), Counter(), 0, 1, 1, listed=2, seconds=5.0).line()
    assert "2.5 s/image (images listed over the run's time)" in line and "images/s" not in line
