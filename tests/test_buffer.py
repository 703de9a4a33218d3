"""ReplayBuffer: storage order, wrap and grow, sampling, bootstrap indices, persistence."""
import os

import numpy as np
import pytest

from fastmbrl.buffer import BUFFER_FORMAT_VERSION, ReplayBuffer, Transition


def rows(start, stop, obs_dim=3, act_dim=2):
    """Transitions whose every field encodes the row number i (obs = i, next_obs = i + 0.5, ...)."""
    i = np.arange(start, stop, dtype=np.float64)
    obs = np.repeat(i[:, None], obs_dim, axis=1)
    act = -np.repeat(i[:, None], act_dim, axis=1)
    return obs, act, 10 * i, obs + 0.5, i % 3 == 0, i % 5 == 0


def test_add_single_and_batch_keep_insertion_order():
    buf = ReplayBuffer(10, 3, 2)
    o, a, r, n, te, tr = rows(0, 4)
    buf.add(o[0], a[0], r[0], n[0], te[0], tr[0])
    buf.add_batch(o[1:], a[1:], r[1:], n[1:], te[1:], tr[1:])
    assert len(buf) == 4
    np.testing.assert_array_equal(buf.obs, o.astype(np.float32))
    np.testing.assert_array_equal(buf.act, a.astype(np.float32))
    np.testing.assert_array_equal(buf.reward, r.astype(np.float32))
    np.testing.assert_array_equal(buf.next_obs, n.astype(np.float32))
    np.testing.assert_array_equal(buf.terminated, te)
    np.testing.assert_array_equal(buf.truncated, tr)
    assert buf.obs.dtype == np.float32 and buf.terminated.dtype == bool
    with pytest.raises(ValueError):     # the views handed out are read-only
        buf.obs[0, 0] = 1.0


def test_wrap_overwrites_oldest_and_reports_oldest_first():
    buf = ReplayBuffer(5, 3, 2, overflow="wrap")
    for start in range(0, 8, 2):            # 8 rows through a ring of 5
        buf.add_batch(*rows(start, start + 2))
    assert len(buf) == 5 and buf.capacity == 5 and buf.n_added == 8
    np.testing.assert_array_equal(buf.obs[:, 0], [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(buf.reward, [30, 40, 50, 60, 70])
    np.testing.assert_array_equal(buf.next_obs[:, 0], [3.5, 4.5, 5.5, 6.5, 7.5])


def test_arrays_are_live_views_of_the_storage_in_storage_order():
    buf = ReplayBuffer(5, 3, 2, overflow="wrap")
    buf.add_batch(*rows(0, 3))
    stored = buf.arrays()
    assert isinstance(stored, Transition) and stored.obs.shape == (3, 3)
    assert all(a.flags.writeable and a.base is not None for a in stored)   # views, for kernels
    np.testing.assert_array_equal(stored.obs[:, 0], [0, 1, 2])
    buf.add_batch(*rows(3, 7))                      # wraps: rows 5, 6 overwrite 0, 1
    np.testing.assert_array_equal(stored.obs[:, 0], [5, 6, 2])      # live: the writes show
    stored = buf.arrays()
    np.testing.assert_array_equal(stored.obs[:, 0], [5, 6, 2, 3, 4])   # storage order
    np.testing.assert_array_equal(buf.obs[:, 0], [2, 3, 4, 5, 6])      # insertion order
    for name in ("act", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(np.sort(getattr(stored, name), axis=0),
                                      np.sort(getattr(buf, name), axis=0))
    assert len(ReplayBuffer(4, 3, 2).arrays().obs) == 0


def test_batch_larger_than_capacity_keeps_newest_rows():
    buf = ReplayBuffer(4, 3, 2)
    buf.add_batch(*rows(0, 2))
    buf.add_batch(*rows(2, 12))
    np.testing.assert_array_equal(buf.obs[:, 0], [8, 9, 10, 11])
    assert buf.n_added == 12


def test_grow_doubles_and_keeps_everything():
    buf = ReplayBuffer(4, 3, 2, overflow="grow")
    buf.add_batch(*rows(0, 3))
    buf.add_batch(*rows(3, 10))
    assert len(buf) == 10 and buf.capacity == 16
    np.testing.assert_array_equal(buf.obs[:, 0], np.arange(10))
    np.testing.assert_array_equal(buf.truncated, np.arange(10) % 5 == 0)


def test_bad_input_is_refused_and_leaves_buffer_unchanged():
    buf = ReplayBuffer(10, 3, 2)
    buf.add_batch(*rows(0, 2))
    o, a, r, n, te, tr = rows(2, 4)
    o[1, 2] = np.nan
    with pytest.raises(ValueError, match="obs.*non-finite"):
        buf.add_batch(o, a, r, n, te, tr)
    with pytest.raises(ValueError, match="act: expected shape"):
        buf.add_batch(rows(2, 4)[0], np.zeros((2, 3)), r, n, te, tr)
    with pytest.raises(ValueError, match="reward: expected shape"):
        buf.add_batch(rows(2, 4)[0], a, np.zeros(3), n, te, tr)
    with pytest.raises(ValueError, match="next_obs"):
        buf.add(np.zeros(3), np.zeros(2), 0.0, np.full(3, np.inf), False, False)
    assert len(buf) == 2
    np.testing.assert_array_equal(buf.obs[:, 0], [0, 1])
    with pytest.raises(ValueError, match="overflow"):
        ReplayBuffer(10, 3, 2, overflow="drop")
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, 3, 2)


def test_sample_returns_consistent_rows():
    buf = ReplayBuffer(6, 3, 2)
    buf.add_batch(*rows(0, 9))              # wrapped: rows 3..8 remain
    batch = buf.sample(500, np.random.default_rng(0))
    assert isinstance(batch, Transition)
    i = batch.obs[:, 0]
    assert batch.obs.shape == (500, 3) and batch.act.shape == (500, 2)
    assert set(np.unique(i)) == set(range(3, 9))      # every surviving row, nothing overwritten
    np.testing.assert_array_equal(batch.next_obs[:, 1], i + 0.5)
    np.testing.assert_array_equal(batch.reward, 10 * i)
    np.testing.assert_array_equal(batch.terminated, i % 3 == 0)
    again = buf.sample(500, np.random.default_rng(0))
    np.testing.assert_array_equal(again.obs, batch.obs)


def test_bootstrap_indices():
    buf = ReplayBuffer(100, 3, 2)
    buf.add_batch(*rows(0, 50))
    idx = buf.bootstrap_indices(4, np.random.default_rng(1))
    assert idx.shape == (4, 50) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < 50
    for member in idx:      # with replacement: about 63% of rows distinct, never all 50
        assert 20 < np.unique(member).size < 50
    assert not np.array_equal(idx[0], idx[1])
    assert buf.bootstrap_indices(2, np.random.default_rng(1), size=7).shape == (2, 7)


@pytest.mark.parametrize("overflow", ["wrap", "grow"])
def test_save_load_round_trip(tmp_path, overflow):
    buf = ReplayBuffer(5, 3, 2, dtype=np.float64, overflow=overflow)
    buf.add_batch(*rows(0, 7))
    path = tmp_path / "buf.npz"
    buf.save(path)
    assert sorted(os.listdir(tmp_path)) == ["buf.npz"]      # no temporary file left behind
    back = ReplayBuffer.load(path)
    assert (back.capacity, back.overflow, back.dtype, back.n_added) == \
           (buf.capacity, overflow, np.float64, 7)
    for f in ("obs", "act", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(back, f), getattr(buf, f))
    back.add_batch(*rows(7, 8))                              # still usable after loading
    assert back.obs[-1, 0] == 7


def test_load_refuses_bad_files(tmp_path):
    bad = tmp_path / "junk.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        ReplayBuffer.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="missing"):
        ReplayBuffer.load(other)
    buf = ReplayBuffer(5, 3, 2)
    buf.add_batch(*rows(0, 2))
    good = tmp_path / "buf.npz"
    buf.save(good)
    data = dict(np.load(good))
    data["meta"] = data["meta"].copy()
    data["meta"][0] = BUFFER_FORMAT_VERSION + 1
    future = tmp_path / "future.npz"
    np.savez(future, **data)
    with pytest.raises(ValueError, match="format version"):
        ReplayBuffer.load(future)
