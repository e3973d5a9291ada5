"""The pure parts of the throughput benchmark (bench/throughput.py): ratios, the process tree and its resident
memory, read from real processes. No timings are asserted: `make bench-throughput` reports them."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

from bench.throughput import PeakRss, _proc_table, descendants, percentile, ratio, tree_rss


def test_ratio_against_the_peer() -> None:
    assert ratio(35.0, 7.0) == 5.0
    assert ratio(3.0, 6.0) == 0.5
    assert math.isnan(ratio(3.0, 0.0))
    assert math.isnan(ratio(3.0, -1.0))


def test_descendants_follow_every_generation_and_nothing_else() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 21: 20}
    assert descendants(10, parents) == {10, 11, 12, 13}
    assert descendants(13, parents) == {13}
    assert descendants(99, parents) == {99}  # a process already gone: only itself


def test_tree_rss_sums_the_tree_and_ignores_unreadable_processes() -> None:
    parents = {10: 1, 11: 10, 12: 11, 20: 1}
    rss = {10: 100, 11: 50, 12: 25, 20: 1000}
    assert tree_rss(10, parents, rss) == 175
    assert tree_rss(11, parents, rss) == 75
    assert tree_rss(10, parents, {10: 100, 20: 1000}) == 100  # children without a reading count 0


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_the_tree_of_a_real_process_includes_its_child_and_its_memory() -> None:
    # A parent that starts a child holding 64 MiB: the tree's peak counts both processes.
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time; b = bytearray(64 * 2 ** 20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(1.5)'])")
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = PeakRss(proc.pid, interval=0.02)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            parents, rss = _proc_table()
            tree = descendants(proc.pid, parents)
            if len(tree) >= 2:
                break
            time.sleep(0.02)
        assert len(tree) >= 2, "the child process was not seen under its parent"
        assert os.getpid() not in tree
    finally:
        proc.wait(timeout=30)
    peak = sampler.stop()
    assert peak >= 64 * 2 ** 20
    # The child's memory is its own peak, not the parent's (a small interpreter waiting for it).
    assert sampler.child >= 64 * 2 ** 20 > sampler.own > 0


def test_long_runs_spread_over_several_photos_of_a_person_and_skip_the_samples_people() -> None:
    from bench.load import LFW_EXCLUDED
    from bench.throughput import long_files

    files = long_files(8000)  # more than LFW's 5,749 people
    assert len(files) == len(set(files)) == 8000
    assert not {f.parent.name for f in files} & LFW_EXCLUDED
    assert len({f.parent.name for f in files}) < 8000


def test_targets_say_met_or_not_from_the_figures() -> None:
    from bench.throughput import PEER, Run, targets

    mib = 2 ** 20
    runs = [Run(PEER, "lfw", 301, 20.0, 400 * mib, 300, 0, startup=0.5),
            Run("yunet-intel", "lfw", 301, 3.0, 380 * mib, 330, 0, startup=1.0),
            Run("dlib", "lfw", 301, 30.0, 600 * mib, 310, 0, startup=1.5)]
    long_runs = [Run("yunet-intel", "lfw-1000", 1000, 20.0, 500 * mib, 1100, 0),
                 Run("yunet-intel", "lfw-10000", 10000, 200.0, 550 * mib, 11000, 0)]
    text = " ".join(targets(runs, long_runs))
    # start-up included: 301/3 against 301/20; once started: 300/2 against 300/19.5
    assert ("yunet-intel on lfw: 6.67x the peer's images/s start-up included (5x target met), 9.75x once started "
            "(5x target met), 0.95x its peak memory (target met)") in text
    assert ("dlib on lfw: 0.67x the peer's images/s start-up included (5x target not met), 0.68x once started (5x "
            "target not met), 1.50x its peak memory (target not met)") in text
    assert "peak 500 MiB at 1000 images, 550 MiB at 10000 (+10%)" in text


def test_the_rate_once_started_takes_out_a_one_image_run() -> None:
    from bench.throughput import marginal_rate

    assert marginal_rate(101, 11.0, 1.0) == 10.0
    assert math.isnan(marginal_rate(1, 5.0, 1.0))  # nothing beyond the first image
    assert math.isnan(marginal_rate(10, 1.0, 2.0))  # the full run was quicker than one image: no rate
    assert math.isnan(marginal_rate(10, 5.0, 0.0))  # no one-image run


def test_a_rate_that_could_not_be_drawn_is_left_out_of_the_median_and_said_so() -> None:
    from bench.throughput import PEER, Run, drawn_median, targets

    assert drawn_median([float("nan"), 2.0, 4.0]) == 3.0
    assert math.isnan(drawn_median([float("nan")]))
    mib = 2 ** 20
    # round 0: the one-image run took longer than the whole run (a noisy machine): no rate once started
    runs = [Run(PEER, "samples", 22, 20.0, 700 * mib, 26, 0, startup=5.0),
            Run("yunet-intel", "samples", 22, 6.0, 400 * mib, 26, 0, startup=7.0),
            Run(PEER, "samples", 22, 20.0, 700 * mib, 26, 1, startup=5.0),
            Run("yunet-intel", "samples", 22, 5.0, 400 * mib, 26, 1, startup=3.0)]
    text = " ".join(targets(runs, []))
    # round 1 alone: 21/2 against 21/15
    assert "7.50x once started (5x target met)" in text
    text = " ".join(targets(runs[:2], []))
    assert "once started not drawn" in text and "nan" not in text
