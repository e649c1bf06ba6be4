#!/usr/bin/env python3
"""Draw recovery time against pool size as an SVG (no plotting library
needed): the relay (one client re-creating every copy, peer-copy=off)
and rampool's COPY (each survivor writing its copies into the new
donors, peer-copy=on), from placement-sim.py --recovery, beside the
loopback measurements of recovery-scale.sh.

    bench/plot-recovery.py [OUT.svg]      (default bench/recovery-scale.svg)

The figures are the ones bench/README.md records ("Recovery time against
pool size"); pass new ones by editing SERIES below after a new run.
"""
import math
import sys

# (label, colour, dash, [(donors, seconds), ...])
SERIES = [
    ("simulated relay, 4 workers (one client's 1 GiB/s NIC; peer-copy=off)",
     "#c0392b", "", [(10, 64.2), (50, 64.0), (200, 64.0), (1000, 64.0)]),
    ("simulated COPY, donor to donor (512 MiB/s per donor; peer-copy=on)",
     "#27ae60", "", [(10, 16.5), (50, 4.1), (200, 1.9), (1000, 1.0)]),
    ("measured relay, loopback, 256 MiB per donor", "#2c3e50", "6,4",
     [(10, 0.47), (25, 0.80)]),
    ("measured COPY, loopback, 256 MiB per donor", "#2980b9", "6,4",
     [(10, 0.43), (25, 0.56)]),
]
TITLE = "Time to full redundancy after one donor is lost"
W, H = 760, 480
L, R, T, B = 80, 30, 50, 150      # margins
X0, X1 = 5, 2000                  # donors (log)
Y0, Y1 = 0.1, 200                 # seconds (log)


def x(v):
    return L + (math.log10(v) - math.log10(X0)) / \
        (math.log10(X1) - math.log10(X0)) * (W - L - R)


def y(v):
    return H - B - (math.log10(v) - math.log10(Y0)) / \
        (math.log10(Y1) - math.log10(Y0)) * (H - T - B)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "bench/recovery-scale.svg"
    s = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
         'font-family="sans-serif" font-size="12">' % (W, H),
         '<rect width="100%" height="100%" fill="white"/>',
         '<text x="%d" y="28" font-size="16">%s</text>' % (L, TITLE)]
    for v in (10, 100, 1000):
        s.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
                 % (x(v), T, x(v), H - B))
        s.append('<text x="%.1f" y="%d" text-anchor="middle">%d</text>'
                 % (x(v), H - B + 16, v))
    for v in (0.1, 1, 10, 100):
        s.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>'
                 % (L, y(v), W - R, y(v)))
        s.append('<text x="%d" y="%.1f" text-anchor="end">%g s</text>'
                 % (L - 6, y(v) + 4, v))
    s.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" '
             'stroke="#888"/>' % (L, T, W - L - R, H - T - B))
    s.append('<text x="%.1f" y="%d" text-anchor="middle">donors in the pool'
             ' (log scale)</text>' % ((L + W - R) / 2, H - B + 34))
    for i, (label, colour, dash, pts) in enumerate(SERIES):
        path = " ".join("%s%.1f,%.1f" % ("M" if k == 0 else "L", x(n), y(t))
                        for k, (n, t) in enumerate(pts))
        s.append('<path d="%s" fill="none" stroke="%s" stroke-width="2.5"%s/>'
                 % (path, colour,
                    ' stroke-dasharray="%s"' % dash if dash else ""))
        for n, t in pts:
            s.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>'
                     % (x(n), y(t), colour))
            s.append('<text x="%.1f" y="%.1f" font-size="10" fill="%s">%g'
                     '</text>' % (x(n) + 6, y(t) - 6, colour, t))
        ly = H - B + 58 + 18 * i
        s.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" '
                 'stroke-width="2.5"%s/>' % (L, ly, L + 30, ly, colour,
                                             ' stroke-dasharray="%s"' % dash
                                             if dash else ""))
        s.append('<text x="%d" y="%d">%s</text>' % (L + 38, ly + 4, label))
    s.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(s) + "\n")
    print("wrote %s" % out)


main()
