#!/usr/bin/env python3
"""Measures GAN samples against the ring of 8 Gaussians (examples/gan_ring.lam, issue 16).

A mode is covered when at least 2% of the samples lie within 0.15 of its centre; the quality is the
fraction of all samples within 0.15 of some centre. The issue's bar: at least 7 of 8 modes covered
with at least 60% of the samples near a centre.

    python3 tools/gan_ring_eval.py fake.npy [--plot ring.png] [--data examples/data/ring/real.npy]
                                            [--json]

--plot draws the samples (blue) over the modes (circles of radius 0.15, red) and, with --data, a
few real points (gray), as a PNG: with matplotlib when it is installed, else with numpy and the small
PNG writer below (zlib stored blocks, CRC-32, Adler-32).
"""
import argparse
import json
import struct
import sys
import zlib

import numpy as np

RADIUS = 2.0
MODES = 8
NEAR = 0.15
COVERED = 0.02


def centres():
    angles = 2 * np.pi * np.arange(MODES) / MODES
    return np.stack([RADIUS * np.cos(angles), RADIUS * np.sin(angles)], axis=1)


def measure(samples):
    samples = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    distances = np.linalg.norm(samples[:, None, :] - centres()[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    near = distances.min(axis=1) <= NEAR
    per_mode = np.array([np.sum(near & (nearest == m)) for m in range(MODES)]) / len(samples)
    return {
        "samples": int(len(samples)),
        "modes_covered": int(np.sum(per_mode >= COVERED)),
        "fraction_near": float(near.mean()),
        "per_mode": [round(float(f), 4) for f in per_mode],
        "passes": bool(np.sum(per_mode >= COVERED) >= 7 and near.mean() >= 0.60),
    }


def png_bytes(pixels):
    """An 8-bit RGB PNG of `pixels` [H, W, 3] uint8, deflated by zlib (in the standard library)."""
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def draw_numpy(samples, real, path, title):
    size, extent = 480, 3.0
    image = np.full((size, size, 3), 255, dtype=np.uint8)

    def to_pixel(points):
        xy = (np.asarray(points) + extent) / (2 * extent) * (size - 1)
        return np.round(xy[:, 0]).astype(int), np.round((size - 1) - xy[:, 1]).astype(int)

    def dots(points, colour, radius):
        xs, ys = to_pixel(points)
        for dx in range(-radius, radius + 1):
            for dy in range(-radius, radius + 1):
                if dx * dx + dy * dy <= radius * radius:
                    x, y = xs + dx, ys + dy
                    keep = (x >= 0) & (x < size) & (y >= 0) & (y < size)
                    image[y[keep], x[keep]] = colour

    # Axes through the origin, light gray.
    image[size // 2, :] = (225, 225, 225)
    image[:, size // 2] = (225, 225, 225)
    if real is not None:
        dots(real[:500], (170, 170, 170), 1)
    angles = np.linspace(0, 2 * np.pi, 200)
    for centre in centres():
        circle = centre + NEAR * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        dots(circle, (214, 39, 40), 0)
    dots(samples, (31, 119, 180), 1)
    with open(path, "wb") as handle:
        handle.write(png_bytes(image))


def draw(samples, real, path, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        draw_numpy(samples, real, path, title)
        return
    figure, axes = plt.subplots(figsize=(5, 5))
    if real is not None:
        axes.scatter(real[:500, 0], real[:500, 1], s=3, c="0.7", label="real")
    axes.scatter(samples[:, 0], samples[:, 1], s=3, c="tab:blue", label="generated")
    for centre in centres():
        axes.add_patch(plt.Circle(centre, NEAR, fill=False, color="tab:red"))
    axes.set_xlim(-3, 3)
    axes.set_ylim(-3, 3)
    axes.set_aspect("equal")
    axes.set_title(title)
    axes.legend(loc="upper right")
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", help=".npy of generated points [N, 2]")
    parser.add_argument("--plot", help="write the samples over the modes to this PNG")
    parser.add_argument("--data", help="real points (.npy) to draw beneath, in gray")
    parser.add_argument("--title", default="")
    parser.add_argument("--json", action="store_true", help="print the measures as JSON")
    args = parser.parse_args()
    samples = np.load(args.samples).astype(np.float64).reshape(-1, 2)
    result = measure(samples)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['modes_covered']}/8 modes covered, {100 * result['fraction_near']:.1f}% of "
              f"{result['samples']} samples within {NEAR} of a centre "
              f"({'passes' if result['passes'] else 'fails'} the bar of 7 modes and 60%); "
              f"per mode: {result['per_mode']}")
    if args.plot:
        real = np.load(args.data).reshape(-1, 2) if args.data else None
        title = args.title or f"{result['modes_covered']}/8 modes, {100 * result['fraction_near']:.0f}% near"
        draw(samples, real, args.plot, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
