"""The Pareto frontier of operating points: those no other point beats on both
costs at once (lower is better on both axes, e.g. perplexity and latency)."""


def frontier(points, x, y):
    """Indices of `points` (dicts) on the frontier of keys `x` and `y`, in
    increasing `x`. A point is off it when another is at least as good on
    both and better on one; of exact ties the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][x], points[i][y], i))
    out, best_y = [], float("inf")
    for i in order:
        if points[i][y] < best_y:
            out.append(i)
            best_y = points[i][y]
    return out
