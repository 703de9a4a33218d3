"""Learning-curve PNGs without matplotlib: a small NumPy rasteriser and a stdlib PNG writer.

The picture is an RGB uint8 array (height, width, 3). Lines are drawn by sampling each segment at
sub-pixel steps; numbers and the two axis titles use a built-in 3x5 bitmap font, scaled up. The PNG
is written with zlib and struct (one IDAT chunk, filter 0 on every row).
"""
import math
import struct
import zlib

import numpy as np

__all__ = ["write_png", "plot_learning_curve"]

# 3x5 glyphs, rows top to bottom, 3 bits per row (bit 2 = left column).
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "-": (0, 0, 7, 0, 0), ".": (0, 0, 0, 0, 2),
    " ": (0, 0, 0, 0, 0), "e": (7, 5, 7, 4, 7), "E": (7, 4, 6, 4, 7), "P": (6, 5, 6, 4, 4),
    "I": (7, 2, 2, 2, 7), "S": (7, 4, 7, 1, 7), "O": (7, 5, 5, 5, 7), "D": (6, 5, 5, 5, 6),
    "R": (6, 5, 6, 5, 5), "T": (7, 2, 2, 2, 2), "U": (5, 5, 5, 5, 7), "N": (6, 5, 5, 5, 5),
    "A": (2, 5, 7, 5, 5), "M": (5, 7, 7, 5, 5), "+": (0, 2, 7, 2, 0),
}

BLACK = (0, 0, 0)
GREY = (200, 200, 200)
BLUE = (31, 119, 180)
ORANGE = (255, 127, 14)


def write_png(path, image):
    """Write an RGB image to ``path`` as PNG.

    Parameters
    ----------
    path : str or os.PathLike
    image : uint8 array of shape (height, width, 3)
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected shape (height, width, 3), got {image.shape}")
    height, width = image.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
           + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as fh:
        fh.write(png)


def _text(img, x, y, text, scale=2, color=BLACK, anchor="left"):
    """Draw ``text`` with its top at row y; anchor 'left', 'right' or 'center' on column x."""
    width = len(text) * 4 * scale - scale
    if anchor == "right":
        x -= width
    elif anchor == "center":
        x -= width // 2
    for ch in text:
        rows = _FONT.get(ch, _FONT[" "])
        for r, bits in enumerate(rows):
            for c in range(3):
                if bits & (4 >> c):
                    y0, x0 = y + r * scale, x + c * scale
                    if 0 <= y0 and y0 + scale <= img.shape[0] and 0 <= x0 and x0 + scale <= img.shape[1]:
                        img[y0:y0 + scale, x0:x0 + scale] = color
        x += 4 * scale


def _line(img, x0, y0, x1, y1, color, thickness=2, dashed=False):
    n = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 2
    t = np.linspace(0.0, 1.0, n)
    xs = np.rint(x0 + (x1 - x0) * t).astype(int)
    ys = np.rint(y0 + (y1 - y0) * t).astype(int)
    if dashed:
        keep = (np.arange(n) // 12) % 2 == 0
        xs, ys = xs[keep], ys[keep]
    h = thickness // 2
    for dy in range(-h, thickness - h):
        for dx in range(-h, thickness - h):
            yy, xx = ys + dy, xs + dx
            ok = (yy >= 0) & (yy < img.shape[0]) & (xx >= 0) & (xx < img.shape[1])
            img[yy[ok], xx[ok]] = color


def _nice_ticks(lo, hi, count=5):
    """Round tick values covering [lo, hi] (1-2-5 steps)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + 1e-9 * step:
        ticks.append(v)
        v += step
    if ticks[-1] < hi:
        ticks.append(ticks[-1] + step)
    return ticks, step


def _fmt(v, step):
    if step >= 1:
        return str(int(round(v)))
    digits = max(0, -int(math.floor(math.log10(step))))
    return f"{v:.{digits}f}"


def plot_learning_curve(path, returns, baseline=None, width=640, height=400):
    """Draw per-episode returns (a line with dots) and write the PNG to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    returns : sequence of float
        Return of each model-based episode, episode 1 first.
    baseline : float, optional
        Drawn as a dashed orange line (e.g. the random-action episode's return).
    width, height : int
        Picture size in pixels.

    Returns
    -------
    image : uint8 array of shape (height, width, 3), the picture written
    """
    y = np.asarray(list(returns), dtype=np.float64)
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 80, 20, 34, 60
    pw, ph = width - left - right, height - top - bottom
    values = y[np.isfinite(y)]
    if baseline is not None and np.isfinite(baseline):
        values = np.append(values, baseline)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    yticks, ystep = _nice_ticks(lo - pad, hi + pad)
    ylo, yhi = yticks[0], yticks[-1]
    n = max(len(y), 1)
    xticks, xstep = _nice_ticks(1, max(n, 2), count=min(max(n - 1, 1), 8))
    xticks = [t for t in xticks if t >= 1 and float(t).is_integer()] or [1]
    xlo, xhi = 1.0, float(max(n, xticks[-1], 2))

    def px(ep):
        return left + (ep - xlo) / (xhi - xlo) * pw

    def py(v):
        return top + (yhi - v) / (yhi - ylo) * ph

    for t in yticks:
        yy = int(round(py(t)))
        _line(img, left, yy, left + pw, yy, GREY, thickness=1)
        _line(img, left - 6, yy, left, yy, BLACK, thickness=1)
        _text(img, left - 10, yy - 5, _fmt(t, ystep), anchor="right")
    for t in xticks:
        xx = int(round(px(t)))
        _line(img, xx, top + ph, xx, top + ph + 6, BLACK, thickness=1)
        _text(img, xx, top + ph + 12, str(int(t)), anchor="center")
    _line(img, left, top, left, top + ph, BLACK, thickness=1)
    _line(img, left, top + ph, left + pw, top + ph, BLACK, thickness=1)
    _text(img, left + pw // 2, height - 20, "EPISODE", anchor="center")
    _text(img, 4, 4, "RETURN")
    if baseline is not None and np.isfinite(baseline):
        yy = py(baseline)
        _line(img, left, yy, left + pw, yy, ORANGE, dashed=True)
    pts = [(px(i + 1), py(v)) for i, v in enumerate(y) if np.isfinite(v)]
    for (xa, ya), (xb, yb) in zip(pts[:-1], pts[1:]):
        _line(img, xa, ya, xb, yb, BLUE, thickness=2)
    for xa, ya in pts:
        xi, yi = int(round(xa)), int(round(ya))
        img[max(yi - 3, 0):yi + 4, max(xi - 3, 0):xi + 4] = BLUE
    write_png(path, img)
    return img
