"""Schedules: values, update steps, validation, serialization."""

import keras
import pytest
from hypothesis import given
from hypothesis import strategies as st

import keras_compress as kc


def test_polynomial_decay_follows_zhu_gupta():
    s = kc.PolynomialDecay(0.1, 0.9, begin_step=100, end_step=1100, power=3)
    assert s(0) == pytest.approx(0.1)
    assert s(100) == pytest.approx(0.1)
    # s_f + (s_i - s_f) * (1 - 0.5)^3
    assert s(600) == pytest.approx(0.9 - 0.8 * 0.125)
    assert s(1100) == pytest.approx(0.9)
    assert s(10_000) == pytest.approx(0.9)


def test_update_steps_include_end_step_even_off_frequency():
    s = kc.PolynomialDecay(0.0, 0.5, begin_step=10, end_step=35, frequency=10)
    steps = [t for t in range(60) if s.should_update(t)]
    assert steps == [10, 20, 30, 35]
    assert not s.is_finished(35) and s.is_finished(36)


def test_constant_sparsity_updates_forever_without_end_step():
    s = kc.ConstantSparsity(0.75, begin_step=5, frequency=5)
    assert [t for t in range(26) if s.should_update(t)] == [5, 10, 15, 20, 25]
    assert s(0) == s(10**9) == 0.75
    assert not s.is_finished(10**9)


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: kc.ConstantSparsity(1.0), "target_sparsity"),
        (lambda: kc.ConstantSparsity(-0.1), "target_sparsity"),
        (lambda: kc.ConstantSparsity(float("nan")), "target_sparsity"),
        (lambda: kc.ConstantSparsity("0.5"), "target_sparsity"),
        (lambda: kc.PolynomialDecay(0.0, 1.2, 0, 10), "final_sparsity"),
        (lambda: kc.PolynomialDecay(-0.5, 0.5, 0, 10), "initial_sparsity"),
        (lambda: kc.PolynomialDecay(0.0, 0.5, 10, 10), "end_step"),
        (lambda: kc.PolynomialDecay(0.0, 0.5, 0, 10, power=0), "power"),
        (lambda: kc.ConstantSparsity(0.5, begin_step=-1), "begin_step"),
        (lambda: kc.ConstantSparsity(0.5, frequency=0), "frequency"),
        (lambda: kc.ConstantSparsity(0.5, begin_step=10, end_step=5), "end_step"),
    ],
)
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize(
    "schedule",
    [kc.ConstantSparsity(0.6, 3, 90, 7), kc.PolynomialDecay(0.2, 0.8, 5, 50, 2.0, 4)],
)
def test_keras_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(schedule)
    assert restored == schedule
    assert all(restored(t) == schedule(t) for t in range(0, 100, 7))


@given(
    initial=st.floats(0.0, 0.98),
    final=st.floats(0.0, 0.98),
    begin=st.integers(0, 1000),
    length=st.integers(1, 5000),
    power=st.floats(0.5, 6.0),
    frequency=st.integers(1, 300),
)
def test_polynomial_decay_is_monotone_and_bounded(initial, final, begin, length, power, frequency):
    s = kc.PolynomialDecay(initial, final, begin, begin + length, power, frequency)
    values = [s(t) for t in range(begin - 5, begin + length + 5, max(1, length // 50))]
    lo, hi = min(initial, final), max(initial, final)
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in values)
    pairs = list(zip(values, values[1:]))
    if final >= initial:
        assert all(b >= a - 1e-12 for a, b in pairs)
    else:
        assert all(b <= a + 1e-12 for a, b in pairs)
    assert s(begin + length) == pytest.approx(final)
    assert s.should_update(begin) and s.should_update(begin + length)


@given(
    kind=st.sampled_from(["Linear", "Cosine"]),
    start=st.floats(-10.0, 10.0),
    end=st.floats(-10.0, 10.0),
    begin=st.integers(0, 1000),
    length=st.integers(1, 5000),
)
def test_value_schedules_are_monotone_and_hit_both_ends(kind, start, end, begin, length):
    s = getattr(kc.schedules, kind)(start, end, begin, begin + length)
    steps = range(begin - 3, begin + length + 3, max(1, length // 40))
    values = [s(t) for t in steps]
    pairs = list(zip(values, values[1:]))
    if end >= start:
        assert all(b >= a - 1e-9 for a, b in pairs)
    else:
        assert all(b <= a + 1e-9 for a, b in pairs)
    assert s(begin - 1) == pytest.approx(start) and s(begin) == pytest.approx(start)
    assert s(begin + length) == pytest.approx(end) and s(begin + length + 10) == pytest.approx(end)
