"""Interior walls (walls="maze"): generation, reachability, stepping, rendering, vector env, rollouts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import gtmsm_env  # noqa: F401  (registers ImageNav-v0)
from gtmsm_env import DOWN, LEFT, RIGHT, STAY, UP, ImageNavEnv, Rollouts, World, collect_rollouts
from gtmsm_env.drawing import WALL_CORE
from gtmsm_env.maze import (
    border_blocked_moves,
    generate_maze,
    interior_edges,
    max_interior_walls,
    reachable_cells,
)

MOVES = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1), STAY: (0, 0)}
OPPOSITE = {UP: DOWN, DOWN: UP, LEFT: RIGHT, RIGHT: LEFT}


def interior_wall_count(blocked: np.ndarray) -> int:
    return int(blocked[:, :-1, RIGHT].sum() + blocked[:-1, :, DOWN].sum())


def test_maze_generation_is_reproducible_from_the_generator():
    a = generate_maze(np.random.default_rng(3), (9, 9), 0.2)
    b = generate_maze(np.random.default_rng(3), (9, 9), 0.2)
    c = generate_maze(np.random.default_rng(4), (9, 9), 0.2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("grid", [(9, 9), (4, 7), (1, 5), (2, 2)])
@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 1.0])
def test_every_cell_is_reachable_and_walls_are_symmetric(grid, fraction):
    edges = len(interior_edges(grid))
    density = fraction * max_interior_walls(grid) / max(edges, 1)
    for seed in range(20):
        blocked = generate_maze(np.random.default_rng(seed), grid, density)
        assert reachable_cells(blocked, (0, 0)).all()
        assert interior_wall_count(blocked) == round(density * edges)
        # The border stays blocked, stay never is, and a wall blocks both sides.
        border = border_blocked_moves(grid)
        assert blocked[border].all() and not blocked[..., STAY].any()
        rows, cols = grid
        for row in range(rows):
            for col in range(cols):
                for action, (dr, dc) in MOVES.items():
                    if action == STAY or border[row, col, action]:
                        continue
                    back = blocked[row + dr, col + dc, OPPOSITE[action]]
                    assert blocked[row, col, action] == back


def test_perfect_maze_is_a_spanning_tree():
    blocked = generate_maze(np.random.default_rng(0), (9, 9), 64 / 144)
    assert interior_wall_count(blocked) == 64  # 144 edges - 80 tree edges
    assert reachable_cells(blocked, (4, 4)).all()


def test_env_draws_a_new_layout_each_reset_reproducibly():
    env = ImageNavEnv(walls="maze", wall_density=0.1)
    env.reset(seed=11)
    first = env.blocked_moves.copy()
    env.reset()
    assert not np.array_equal(first, env.blocked_moves)
    again = ImageNavEnv(walls="maze", wall_density=0.1)
    again.reset(seed=11)
    np.testing.assert_array_equal(first, again.blocked_moves)
    assert interior_wall_count(first) == round(0.1 * 144)
    assert reachable_cells(first, env.position).all()


def test_default_border_is_unchanged_and_draws_nothing_extra():
    plain, maze0 = ImageNavEnv(), ImageNavEnv(walls="maze", wall_density=0.0)
    o1, _ = plain.reset(seed=2)
    o2, _ = maze0.reset(seed=2)
    np.testing.assert_array_equal(o1, o2)  # the maze draw comes after the image
    np.testing.assert_array_equal(plain.blocked_moves, border_blocked_moves((9, 9)))
    np.testing.assert_array_equal(maze0.blocked_moves, plain.blocked_moves)


def test_move_through_an_interior_wall_leaves_the_position_and_sets_wall_hit():
    env = ImageNavEnv(walls="maze", wall_density=0.3, start="random")
    env.reset(seed=5)
    blocked = env.blocked_moves
    border = border_blocked_moves(env.grid_shape)
    interior = np.argwhere(blocked & ~border)
    assert len(interior) > 0
    rng = np.random.default_rng(0)
    crossings = 0
    for _ in range(2000):  # random actions; check every step against the layout
        before = env.position
        action = int(rng.integers(5))
        obs, _, _, _, info = env.step(action)
        if blocked[before][action]:
            assert info["wall_hit"] is True
            assert env.position == before
            crossings += not border[before][action]
        else:
            assert info["wall_hit"] is False
            assert env.position == (before[0] + MOVES[action][0], before[1] + MOVES[action][1])
        np.testing.assert_array_equal(info["position"], env.position)
    assert crossings > 0  # interior walls were hit, not only the border


def test_walls_are_drawn_in_rgb_array_frames():
    env = ImageNavEnv(walls="maze", wall_density=0.2, render_mode="rgb_array")
    env.reset(seed=1, options={"image": np.zeros((32, 32, 3), np.uint8)})
    frame = env.render()
    core = (frame == np.array(WALL_CORE, np.uint8)).all(axis=-1)  # on a black image: the white core
    assert core.sum() > 0
    plain = ImageNavEnv(render_mode="rgb_array")
    plain.reset(seed=1, options={"image": np.zeros((32, 32, 3), np.uint8)})
    assert not (plain.render() == np.array(WALL_CORE, np.uint8)).all(axis=-1).any()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"walls": "rooms"}, ValueError, "walls must be one of"),
        ({"wall_density": 0.1}, ValueError, "applies only to walls='maze'"),
        ({"walls": "maze", "wall_density": -0.1}, ValueError, r"in \[0, 1\]"),
        ({"walls": "maze", "wall_density": "0.1"}, TypeError, "wall_density must be a number"),
        ({"walls": "maze", "wall_density": 0.5}, ValueError, "at most 64"),
    ],
)
def test_bad_wall_kwargs(kwargs, error, match):
    with pytest.raises(error, match=match):
        ImageNavEnv(**kwargs)
    with pytest.raises(error, match=match):
        gtmsm_env.ImageNavVectorEnv(2, **kwargs)


@pytest.mark.parametrize("start", ["center", "random"])
def test_vector_env_equals_single_envs_with_a_maze(start):
    n, steps = 4, 60
    kwargs = {"walls": "maze", "wall_density": 0.25, "start": start, "max_episode_steps": 17}
    actions = np.random.default_rng(0).integers(0, 5, (steps, n))
    sync = gym.vector.SyncVectorEnv([lambda: gym.make("ImageNav-v0", **kwargs)] * n)
    vec = gym.make_vec("ImageNav-v0", num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    (sync_obs, sync_info), (vec_obs, vec_info) = sync.reset(seed=9), vec.reset(seed=9)
    np.testing.assert_array_equal(sync_obs, vec_obs)
    np.testing.assert_array_equal(sync_info["position"], vec_info["position"])
    hits = 0
    for t, a in enumerate(actions):
        blocked = np.stack([e.unwrapped.blocked_moves for e in sync.envs])
        np.testing.assert_array_equal(blocked, vec.unwrapped.blocked_moves, err_msg=f"step {t}")
        s, v = sync.step(a), vec.step(a)
        for name, x, y in zip(("obs", "reward", "terminated", "truncated"), s[:4], v[:4], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"{name} at step {t}")
        for key in ("position", "wall_hit", "step"):
            np.testing.assert_array_equal(s[4][key], v[4][key], err_msg=f"{key} at step {t}")
        hits += int(v[4]["wall_hit"].sum())
    assert hits > 0


def test_vector_env_renders_each_envs_walls():
    vec = gtmsm_env.ImageNavVectorEnv(2, walls="maze", wall_density=0.2, render_mode="rgb_array")
    vec.reset(seed=0)
    single = ImageNavEnv(walls="maze", wall_density=0.2, render_mode="rgb_array")
    for i, frame in enumerate(vec.render()):
        single.reset(seed=i)
        np.testing.assert_array_equal(frame, single.render())


def test_rollouts_keep_the_layout_and_reproduce_it(tmp_path):
    rollouts = collect_rollouts(3, 120, seed=4, world=World(walls="maze", wall_density=0.3))
    blocked = rollouts.blocked_moves
    assert blocked.shape == (3, 9, 9, 5) and blocked.dtype == np.bool_
    assert rollouts.metadata["walls"] == "maze" and rollouts.metadata["wall_density"] == 0.3
    # Every recorded wall hit is a blocked move of that sequence's layout, and vice versa.
    for i in range(3):
        rows, cols = rollouts.positions[i, :-1].T
        expected = blocked[i, rows, cols, rollouts.actions[i, 1:]]
        np.testing.assert_array_equal(rollouts.wall_hits[i, 1:], expected)
        env = ImageNavEnv(walls="maze", wall_density=0.3)
        env.reset(seed=4 + i)
        np.testing.assert_array_equal(env.blocked_moves, blocked[i])
    rollouts.save(tmp_path / "maze.npz")
    loaded = Rollouts.load(tmp_path / "maze.npz")
    np.testing.assert_array_equal(loaded.blocked_moves, blocked)
    np.testing.assert_array_equal(loaded[1].blocked_moves, blocked[1:2])
    plain = collect_rollouts(2, 10, seed=4)
    assert plain.blocked_moves is None and plain.metadata["walls"] == "border"
    plain.save(tmp_path / "plain.npz")
    assert Rollouts.load(tmp_path / "plain.npz").blocked_moves is None


def test_rollouts_reject_a_layout_of_the_wrong_shape():
    r = collect_rollouts(2, 10, seed=0, world=World(walls="maze"))
    with pytest.raises(ValueError, match="blocked_moves"):
        Rollouts(r.observations, r.actions, r.positions, r.wall_hits, r.images, {},
                 np.zeros((3, 9, 9, 5), bool))


def test_cli_writes_a_maze_dataset(tmp_path):
    from gtmsm_env.rollouts import main

    out = tmp_path / "maze.npz"
    main(["--num-sequences", "2", "--seq-len", "8", "--walls", "maze", "--wall-density", "0.1",
          "--out", str(out)])
    loaded = Rollouts.load(out)
    assert loaded.blocked_moves.shape == (2, 9, 9, 5)
    assert loaded.metadata["walls"] == "maze" and loaded.metadata["wall_density"] == 0.1
