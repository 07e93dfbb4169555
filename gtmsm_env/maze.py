"""Walls: the border of the grid, random mazes with every cell reachable, and their validation.

A layout is a ``(rows, cols, 5)`` bool array ``blocked[row, col, action]``: True iff ``action``
from ``(row, col)`` is blocked (it would leave the grid or cross an interior wall).
"""

from __future__ import annotations

import numpy as np

from gtmsm_env.world import ACTION_DELTAS, DEFAULT_WALL_DENSITY, MOVES, WALL_MODES, Action

_DROW = tuple(int(d) for d in ACTION_DELTAS[:, 0])
_DCOL = tuple(int(d) for d in ACTION_DELTAS[:, 1])


def interior_edges(grid_shape: tuple[int, int]) -> np.ndarray:
    """Every edge between two neighbouring cells, ``(E, 2)`` flat cell indices ``row * cols + col``:
    first the horizontal neighbours ``(r, c)-(r, c + 1)`` row-major, then the vertical ones
    ``(r, c)-(r + 1, c)`` row-major (E = 144 on the 9 x 9 grid)."""
    rows, cols = grid_shape
    cell = np.arange(rows * cols).reshape(rows, cols)
    horizontal = np.stack([cell[:, :-1].ravel(), cell[:, 1:].ravel()], axis=1)
    vertical = np.stack([cell[:-1, :].ravel(), cell[1:, :].ravel()], axis=1)
    return np.concatenate([horizontal, vertical]).astype(np.int64)


def max_interior_walls(grid_shape: tuple[int, int]) -> int:
    """The most interior walls that leave every cell reachable: ``E - (rows * cols - 1)`` (the
    walls of a perfect maze, whose open edges form a spanning tree); 64 on the 9 x 9 grid."""
    rows, cols = grid_shape
    return len(interior_edges(grid_shape)) - (rows * cols - 1)


def num_interior_walls(grid_shape: tuple[int, int], wall_density: float) -> int:
    """How many interior walls ``wall_density`` asks for: ``round(wall_density * E)``."""
    return int(round(wall_density * len(interior_edges(grid_shape))))


def border_blocked_moves(grid_shape: tuple[int, int]) -> np.ndarray:
    """``(rows, cols, 5)`` bool: ``[row, col, action]`` is True iff ``action`` from ``(row, col)``
    would leave the grid. Stay (action 0) is never blocked."""
    rows, cols = grid_shape
    row = np.arange(rows)[:, None, None]
    col = np.arange(cols)[None, :, None]
    target_row = row + ACTION_DELTAS[:, 0]
    target_col = col + ACTION_DELTAS[:, 1]
    return ~((target_row >= 0) & (target_row < rows) & (target_col >= 0) & (target_col < cols))


def generate_maze(
    rng: np.random.Generator, grid_shape: tuple[int, int], wall_density: float
) -> np.ndarray:
    """A random wall layout with every cell reachable: ``(rows, cols, 5)`` bool blocked moves
    (the border included), with ``num_interior_walls(grid_shape, wall_density)`` interior walls.

    One draw, ``rng.permutation(E)``, orders the interior edges. Walls are the first edges in that
    order whose removal keeps the grid connected (reverse-delete), computed exactly as: the open
    edges of a spanning tree built by Kruskal over the *reversed* order are never walled; the
    first ``k`` other edges in the order are. So ``wall_density=max_interior_walls / E`` gives a
    perfect maze, and small densities give isolated walls anywhere.
    """
    rows, cols = grid_shape
    edges = interior_edges(grid_shape)
    count = num_interior_walls(grid_shape, wall_density)
    if count > max_interior_walls(grid_shape):
        raise ValueError(
            f"wall_density={wall_density} asks for {count} interior walls; at most "
            f"{max_interior_walls(grid_shape)} keep every cell of the {rows}x{cols} grid reachable"
        )
    order = rng.permutation(len(edges))
    parent = list(range(rows * cols))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    in_tree = np.zeros(len(edges), bool)
    for e in order[::-1].tolist():
        a, b = root(int(edges[e, 0])), root(int(edges[e, 1]))
        if a != b:
            parent[a] = b
            in_tree[e] = True
    walls = [e for e in order.tolist() if not in_tree[e]][:count]
    blocked = border_blocked_moves(grid_shape)
    for e in walls:
        a, b = int(edges[e, 0]), int(edges[e, 1])
        (ra, ca), (rb, cb) = divmod(a, cols), divmod(b, cols)
        if ra == rb:  # b is right of a
            blocked[ra, ca, Action.RIGHT] = blocked[rb, cb, Action.LEFT] = True
        else:  # b is below a
            blocked[ra, ca, Action.DOWN] = blocked[rb, cb, Action.UP] = True
    return blocked


def reachable_cells(blocked: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """``(rows, cols)`` bool: the cells reachable from ``start`` through unblocked moves."""
    rows, cols = blocked.shape[:2]
    seen = np.zeros((rows, cols), bool)
    seen[start] = True
    frontier = [start]
    while frontier:
        row, col = frontier.pop()
        for a in MOVES:
            if not blocked[row, col, a]:
                nxt = (row + _DROW[a], col + _DCOL[a])
                if not seen[nxt]:
                    seen[nxt] = True
                    frontier.append(nxt)
    return seen


def validate_walls(walls: object, wall_density: object, grid_shape: tuple[int, int]) -> float | None:
    """Check ``walls`` / ``wall_density``; the density to use (``None`` for ``walls="border"``)."""
    if walls not in WALL_MODES:
        raise ValueError(f"walls must be one of {WALL_MODES}, got {walls!r}")
    if walls == "border":
        if wall_density is not None:
            raise ValueError("wall_density applies only to walls='maze' (walls='border' has none)")
        return None
    if wall_density is None:
        wall_density = DEFAULT_WALL_DENSITY
    if isinstance(wall_density, bool) or not isinstance(wall_density, (int, float, np.number)):
        raise TypeError(f"wall_density must be a number, got {type(wall_density).__name__}")
    density = float(wall_density)
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"wall_density must be in [0, 1], got {wall_density}")
    count, most = num_interior_walls(grid_shape, density), max_interior_walls(grid_shape)
    if count > most:
        edges = len(interior_edges(grid_shape))
        raise ValueError(
            f"wall_density={density} asks for {count} of {edges} interior walls; at most {most} "
            f"(wall_density <= {most / edges:.4f}, a perfect maze) keep every cell of the "
            f"{grid_shape[0]}x{grid_shape[1]} grid reachable"
        )
    return density
