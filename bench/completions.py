#!/usr/bin/env python3
"""Where LocalStack spends each CompleteMultipartUpload, from a perf recording of its process.

Usage: bench/completions.py PERF_DATA LOCALSTACK_LOG

PERF_DATA must be recorded with `-k CLOCK_REALTIME -g` from a LocalStack started with
PYTHONPERFSUPPORT=1 (bench/profile-completions.sh does all of it). A completion's window runs
from the last UploadPart answered before it to its own answer, both from LocalStack's log. For
each window: its length, the samples in it, and the leaf functions that took most of them.
"""
import collections
import datetime
import subprocess
import sys


def epoch(line):
    return datetime.datetime.fromisoformat(line[:23] + "+00:00").timestamp()


def windows(log):
    last_part = None
    for line in open(log):
        if "s3.UploadPart =>" in line:
            last_part = epoch(line)
        elif "s3.CompleteMultipartUpload =>" in line and last_part is not None:
            yield last_part, epoch(line)


def leaves(perf_data, start, end):
    out = subprocess.run(
        ["perf", "script", "-i", perf_data, "--time", f"{start:.3f},{end:.3f}", "-F", "ip,sym"],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = collections.Counter()
    for sample in out.split("\n\n"):
        frames = sample.strip().splitlines()
        if frames:
            counts[" ".join(frames[0].split()[1:])] += 1
    return counts


def main():
    perf_data, log = sys.argv[1:3]
    for start, end in windows(log):
        counts = leaves(perf_data, start, end)
        total = sum(counts.values())
        if total == 0:
            continue
        when = datetime.datetime.fromtimestamp(start, datetime.UTC).strftime("%H:%M:%S")
        top = ", ".join(f"{name} {n}" for name, n in counts.most_common(3))
        print(f"{when} {end - start:.2f} s, {total} samples: {top}")


if __name__ == "__main__":
    main()
