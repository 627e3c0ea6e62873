#!/usr/bin/env python3
"""Checks a plan picture (redist::traffic_svg) the way a reader sees it: the SVG must parse as XML with an
<svg> root of positive width and height, and headless Chromium must draw it to a PNG that is not blank: many
colours, a real share of non-white pixels, every cell that has a <title> (a nonzero rank-to-rank entry) drawn
in its own colour at its own place, and the bottleneck's red outline where the SVG has one.

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


def parse_svg(path):
    """(width, height, cells, outlined): cells are (x, y, w, h, (r, g, b)) of each titled <rect>."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        fail("%s is not well-formed XML: %s" % (path, e))
    if root.tag != SVG_NS + "svg":
        fail("%s: the root element is %s, not an SVG <svg>" % (path, root.tag))
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    if width <= 0 or height <= 0 or root.get("viewBox") != "0 0 %d %d" % (width, height):
        fail("%s: <svg> needs a positive width and height and a viewBox of the same size" % path)
    cells = []
    for rect in root.iter(SVG_NS + "rect"):
        if rect.find(SVG_NS + "title") is None:
            continue
        fill = rect.get("fill", "")
        if len(fill) != 7 or fill[0] != "#":
            fail("%s: a cell's fill %r is not #rrggbb" % (path, fill))
        rgb = tuple(int(fill[i:i + 2], 16) for i in (1, 3, 5))
        cells.append(tuple(float(rect.get(k)) for k in ("x", "y", "width", "height")) + (rgb,))
    outlined = any(r.get("stroke") == "#d62728" for r in root.iter(SVG_NS + "rect"))
    print("check_picture: %s well-formed, %d x %d, %d titled cells" % (path, width, height, len(cells)))
    return width, height, cells, outlined


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
        fail("%s: PNG of depth %d colour type %d interlace %d is not handled"
             % (path, depth, colour, interlace))
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
    width, height, cells, outlined = parse_svg(svg)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("check_picture: skipped: no chromium on PATH (Debian: apt-get install chromium); the SVG is "
              "well-formed, its drawing is unchecked")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as profile:
        png = os.path.abspath(sys.argv[2]) if len(sys.argv) == 3 else os.path.join(profile, "picture.png")
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--force-device-scale-factor=1", "--user-data-dir=" + profile,
                   "--window-size=%d,%d" % (width, height),
                   "--screenshot=" + png, "file://" + svg]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:
            fail("chromium did not finish in 90 s: " + " ".join(command))
        if run.returncode != 0 or not os.path.exists(png):
            fail("chromium exited %d without a screenshot:\n%s" % (run.returncode, run.stderr[-2000:]))
        w, h, rows = png_pixels(png)
    if (w, h) != (width, height):
        fail("the screenshot is %d x %d, the SVG %d x %d" % (w, h, width, height))
    pixels = [p for row in rows for p in row]
    colours = set(pixels)
    ink = sum(1 for p in pixels if p != (255, 255, 255)) / len(pixels)
    red = sum(1 for p in pixels if near(p, (214, 39, 40), 40))
    # The centre of each cell (the bottleneck's 2-pixel outline runs along cell edges, never through one).
    wrong = [(x, y, rgb, rows[int(y + ch / 2)][int(x + cw / 2)]) for x, y, cw, ch, rgb in cells
             if not near(rows[int(y + ch / 2)][int(x + cw / 2)], rgb, 8)]
    print("check_picture: drawn %d x %d: %d colours, %.1f%% non-white, %d red pixels, %d of %d cells "
          "in their colour" % (w, h, len(colours), 100 * ink, red, len(cells) - len(wrong), len(cells)))
    if wrong:
        x, y, want, got = wrong[0]
        fail("%d cells are not drawn in their colour; the first at (%g, %g) wants %s, is %s"
             % (len(wrong), x, y, want, got))
    if len(colours) < 16 or ink < 0.03 or (outlined and red < 50):
        fail("the drawing looks blank (want >= 16 colours, >= 3% non-white pixels, the red bottleneck "
             "outline where the SVG has one)")
    print("check_picture: ok")


if __name__ == "__main__":
    main()
