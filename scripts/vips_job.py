#!/usr/bin/env python3
"""libvips in-process (pyvips, one thread) making what a Darkroom job makes.

    vips_job.py RUNS FILE

Prints two medians over RUNS runs, in milliseconds and separated by a
space: the two thumbnails, then the full-size copy, made from FILE's bytes
(read once, before the clock starts):

- a 200 px and an 800 px wide thumbnail with shrink-on-load
  (``thumbnail_buffer``), saved as Darkroom saves them: JPEG at quality 82
  (stripped, optimized Huffman tables, progressive), or PNG when the image
  has an alpha channel;
- a full-size copy without metadata, re-encoded in the original's format:
  JPEG with optimized Huffman tables at quality 82, PNG at libvips' default
  compression, WebP lossless when the original is lossless and at quality
  82 otherwise, GIF as libvips writes it.

``VIPS_CONCURRENCY=1`` holds libvips to one thread, as a Spin instance has
one. The operation cache is off, so that no run reuses another's work.
"""

import os
import statistics
import sys
import time

os.environ["VIPS_CONCURRENCY"] = "1"

import pyvips  # noqa: E402  (after the environment it reads)

pyvips.cache_set_max(0)


def derivative(image):
    if image.hasalpha():
        return image.pngsave_buffer(strip=True)
    return image.jpegsave_buffer(Q=82, strip=True, optimize_coding=True, interlace=True)


def full_copy(data, kind):
    image = pyvips.Image.new_from_buffer(data, "", access="sequential")
    if kind == "jpeg":
        return image.jpegsave_buffer(Q=82, strip=True, optimize_coding=True)
    if kind == "png":
        return image.pngsave_buffer(strip=True)
    if kind == "webp":
        # A lossless WebP is VP8L: its RIFF's first chunk is "VP8L".
        lossless = b"VP8L" in data[12:40]
        return image.webpsave_buffer(strip=True, lossless=lossless, Q=82)
    return image.gifsave_buffer(strip=True)


def kind_of(data):
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    return "gif"


def main():
    runs, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "rb") as f:
        data = f.read()
    kind = kind_of(data)
    thumbnails, copies = [], []
    for _ in range(runs):
        start = time.perf_counter()
        for width in (200, 800):
            derivative(pyvips.Image.thumbnail_buffer(data, width))
        middle = time.perf_counter()
        full_copy(data, kind)
        end = time.perf_counter()
        thumbnails.append((middle - start) * 1000)
        copies.append((end - middle) * 1000)
    print(round(statistics.median(thumbnails)), round(statistics.median(copies)))


if __name__ == "__main__":
    main()
