import pytest
import torch
import torch.nn.functional as F
from torch import nn

from m2ugen import cpu_linear
from m2ugen.cpu_linear import BlockedLinear, blocked_linear


@pytest.fixture
def threads(monkeypatch):
    """Set the intra-op thread count; every weight size takes the blocked path."""
    monkeypatch.setattr(cpu_linear, "MIN_BLOCKED_ELEMENTS", 0)
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("rows", [1, 3, 40])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("num_threads", [2, 3, 4])
def test_blocked_linear_equals_linear(threads, rows, with_bias, num_threads):
    threads(num_threads)
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(2, rows, 48, generator=g)
    w = torch.randn(36, 48, generator=g)
    b = torch.randn(36, generator=g) if with_bias else None
    out = blocked_linear(x, w, b)
    assert out.shape == (2, rows, 36)
    torch.testing.assert_close(out, F.linear(x, w, b), atol=1e-5, rtol=1e-5)


def test_blocked_linear_falls_back_when_it_cannot_split(threads, monkeypatch):
    threads(4)
    x = torch.randn(1, 1, 16)
    prime_rows = torch.randn(7, 16)  # no divisor in 2..4: one block, the plain product
    assert torch.equal(blocked_linear(x, prime_rows), F.linear(x, prime_rows))
    w = torch.randn(8, 16)
    monkeypatch.setattr(cpu_linear, "MIN_BLOCKED_ELEMENTS", w.numel() + 1)  # too small to split
    assert torch.equal(blocked_linear(x, w), F.linear(x, w))
    monkeypatch.setattr(cpu_linear, "MIN_BLOCKED_ELEMENTS", 0)
    threads(1)
    assert torch.equal(blocked_linear(x, w), F.linear(x, w))


def test_blocked_linear_splits_into_row_blocks(threads, monkeypatch):
    threads(2)
    calls = []
    monkeypatch.setattr(torch, "baddbmm", lambda *a: calls.append(a[0].shape) or torch.Tensor.baddbmm(*a))
    blocked_linear(torch.randn(3, 16), torch.randn(8, 16), torch.randn(8))
    assert calls == [(2, 1, 4)]  # the bias as 2 blocks of 4 rows: one batched product over both cores


def test_blocked_linear_module_shares_parameters_and_gradients(threads):
    threads(2)
    linear = nn.Linear(16, 10)
    blocked = BlockedLinear.from_linear(linear)
    assert blocked.weight is linear.weight and blocked.bias is linear.bias
    assert set(blocked.state_dict()) == {"weight", "bias"}
    x = torch.randn(5, 16)
    blocked(x).square().sum().backward()
    expected_grad = linear.weight.grad.clone()
    linear.weight.grad = None
    linear(x).square().sum().backward()
    torch.testing.assert_close(expected_grad, linear.weight.grad)


def test_blocked_wins_follows_the_measurement_once_per_shape(threads, monkeypatch):
    threads(2)
    timings = iter([[1.0, 0.5], [1.0, 0.95]])  # (F.linear, blocked) seconds of two measurements
    calls = []
    monkeypatch.setattr(cpu_linear, "_MEASURED", {})
    monkeypatch.setattr(cpu_linear, "_best_seconds", lambda fns: calls.append(len(fns)) or next(timings))
    assert cpu_linear.blocked_wins(torch.randn(8, 16))  # twice as fast: chosen
    assert cpu_linear.blocked_wins(torch.randn(8, 16)) and calls == [2]  # the same shape is not timed again
    assert not cpu_linear.blocked_wins(torch.randn(8, 32))  # 5% faster is within the margin: stock layer
    threads(1)
    assert not cpu_linear.blocked_wins(torch.randn(8, 16)) and calls == [2, 2]  # one thread: never blocked


def test_use_blocked_linears_where_measured(threads):
    threads(2)
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 4))
    cpu_linear.use_blocked_linears(model, where=lambda w: w.shape[0] == 8)
    assert [type(m) for m in model] == [BlockedLinear, nn.Linear]
