#!/usr/bin/env python3
"""Checks a plan picture (redist::traffic_svg) the way a reader sees it: the SVG must parse as XML with an
<svg> root of positive width and height, and headless Chromium must draw it to a PNG that is not blank: many
colours, a real share of non-white pixels, the heat ramp's dark end and the bottleneck's red outline.

    check_picture.py FILE.svg [OUT.png]      exit 0 ok, 1 wrong, 77 (skipped) without Chromium
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

SVG_NS = "{http://www.w3.org/2000/svg}"


def fail(why):
    print("check_picture: " + why)
    sys.exit(1)


def svg_size(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        fail("%s is not well-formed XML: %s" % (path, e))
    if root.tag != SVG_NS + "svg":
        fail("%s: the root element is %s, not an SVG <svg>" % (path, root.tag))
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    if width <= 0 or height <= 0 or root.get("viewBox") is None:
        fail("%s: <svg> needs a positive width and height and a viewBox" % path)
    titles = sum(1 for _ in root.iter(SVG_NS + "title"))
    print("check_picture: %s well-formed, %d x %d, %d titled cells" % (path, width, height, titles))
    return width, height


def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG, decoded with zlib alone."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("%s is not a PNG" % path)
    at, idat, header = 8, b"", None
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        fail("%s: PNG of depth %d colour type %d interlace %d is not handled" % (path, depth, colour, interlace))
    channels = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(line[x * channels:x * channels + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def near(pixel, rgb, tolerance=24):
    return all(abs(p - q) <= tolerance for p, q in zip(pixel, rgb))


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        sys.exit(2)
    svg = os.path.abspath(sys.argv[1])
    width, height = svg_size(svg)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("check_picture: skipped: no chromium on PATH (Debian: apt-get install chromium); the SVG is "
              "well-formed, its drawing is unchecked")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as profile:
        png = os.path.abspath(sys.argv[2]) if len(sys.argv) == 3 else os.path.join(profile, "picture.png")
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--user-data-dir=" + profile, "--window-size=%d,%d" % (width, height),
                   "--screenshot=" + png, "file://" + svg]
        run = subprocess.run(command, capture_output=True, text=True, timeout=90)
        if run.returncode != 0 or not os.path.exists(png):
            fail("chromium exited %d without a screenshot:\n%s" % (run.returncode, run.stderr[-2000:]))
        w, h, rows = png_pixels(png)
    pixels = [p for row in rows for p in row]
    colours = set(pixels)
    ink = sum(1 for p in pixels if p != (255, 255, 255)) / len(pixels)
    dark = sum(1 for p in pixels if near(p, (68, 1, 84), 40))
    red = sum(1 for p in pixels if near(p, (214, 39, 40), 40))
    print("check_picture: drawn %d x %d: %d colours, %.1f%% non-white, %d dark-ramp and %d red pixels"
          % (w, h, len(colours), 100 * ink, dark, red))
    if len(colours) < 16 or ink < 0.03 or dark < 50 or red < 50:
        fail("the drawing looks blank or lacks the heatmap (want >= 16 colours, >= 3% non-white, the ramp's "
             "dark end and the red bottleneck outline)")
    print("check_picture: ok")


if __name__ == "__main__":
    main()
