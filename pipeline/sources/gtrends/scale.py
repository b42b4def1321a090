"""Put Google Trends cells from many requests on one consistent scale (DESIGN §5).

Every request w is normalised on its own: r_w(k,t) ≈ s(k,t) / M_w, rounded to an integer.
In logs that is additive, ``log r_w(k,t) = a_w + u(k,t)``, with one offset a_w per request and
one level u(k,t) per keyword and period. :func:`joint_scale` fits all offsets and levels at
once by least squares over the cells that are large enough to trust (value ≥ τ; rounding to
integers makes small values coarse: ±0.5 is 10 % at 5). Overlapping windows, batches sharing an
anchor keyword and repeated fetches all simply add equations. Each equation is weighted by the
inverse variance of log r (sampling noise plus rounding, sd ≈ 0.29/r), so a 90 counts more
than a 6; the sampling noise is measured from the cells several requests share.

Solving: for fixed offsets the best u(k,t) is the weighted mean of (log r − a_w) over the
requests that cover (k,t). Substituting it leaves normal equations for the offsets alone — a
Laplacian-like system of size n_requests built from the cells that several requests share.
It is singular by one degree of freedom per connected group of requests (a common factor),
removed by fixing the first offset; several groups mean the data cannot be put on one scale,
which is an error.

:func:`chain_by_overlap_ratio` is the classic baseline (chain windows one after the other by
the ratio of their overlap sums) kept for the benchmark.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("request_id", "keyword", "period_start", "value")
OUTPUT_COLUMNS = ["keyword", "period_start", "value", "observations"]
DEFAULT_TAU = 5.0
ROUNDING_SD = 12**-0.5  # sd of rounding to an integer
DEFAULT_SAMPLING_NOISE = 0.03  # sd of Google's per-fetch sampling (log) when it cannot be measured
MIN_SAMPLING_NOISE = 0.005  # keeps the weights of large values finite when no noise is measured
BELOW_ONE_VALUE = 0.5  # "<1" means 0 < x < 1 on the request's scale: take the midpoint


class DisconnectedRequests(ValueError):
    """Some requests share no usable cell with the rest, so no common scale exists."""


def _validated(cells: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in REQUIRED_COLUMNS if column not in cells.columns]
    if missing:
        raise ValueError(f"cells lack column(s): {', '.join(missing)}")
    frame = cells.reset_index(drop=True).copy()
    values = frame["value"].to_numpy(dtype=float)
    if np.isnan(values).any() or (values < 0).any() or (values > 100).any():
        raise ValueError("cell values must be numbers between 0 and 100")
    frame["value"] = values
    for flag in ("below_one", "is_partial"):
        frame[flag] = frame[flag].astype(bool) if flag in frame.columns else False
    return frame


def _connected_groups(n_requests: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected groups of requests (union-find over request pairs sharing a cell)."""
    parent = list(range(n_requests))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for first, second in pairs:
        parent[root(int(first))] = root(int(second))
    groups: dict[int, list[int]] = {}
    for i in range(n_requests):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda group: group[0])


def _by_cell(cell: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Observations sorted by cell: (cell, each cell's first position, each cell's count,
    *columns in the same order)."""
    order = np.argsort(cell, kind="stable")
    cell = cell[order]
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]]) if cell.size else order
    counts = np.diff(np.r_[starts, cell.size])
    return cell, starts, counts, *(column[order] for column in columns)


def _shared_cell_terms(
    cell: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    request: np.ndarray,
    weight: np.ndarray,
    cell_weight: np.ndarray,
    n_requests: int,
    max_terms: int = 1 << 21,
) -> np.ndarray:
    """Σ_c β_c β_cᵀ / W_c as an (n_requests × n_requests) matrix; β_c holds the weights of the
    requests that observe cell c, W_c their sum. Observations come sorted by cell
    (:func:`_by_cell`).

    A cell seen by n requests adds n² terms, and daily collects make n reach ~60–270 (each
    day's window re-covers the last weeks), so the terms are generated for a block of cells at
    a time (at most ``max_terms``) and summed by ``bincount``: memory stays bounded however
    many windows accumulate.
    """
    ends = np.cumsum(counts.astype(np.int64) ** 2)
    cuts = np.unique(np.searchsorted(ends, np.arange(max_terms, ends[-1], max_terms), "right"))
    total = np.zeros(n_requests * n_requests)
    for first, last in zip(np.r_[0, cuts], np.r_[cuts, starts.size], strict=True):
        if first == last:
            continue
        n, start = counts[first:last], starts[first:last]
        size = np.repeat(n, n)  # per observation of these cells: its cell's count
        base = np.repeat(start, n)  # ... and its cell's first observation
        # Every observation i, once per observation j of the same cell (itself included): i is
        # repeated n times, and n consecutive integers modulo n visit each j of the cell once.
        i = np.repeat(np.arange(start[0], start[-1] + n[-1]), size)
        j = np.repeat(base, size) + np.arange(i.size) % np.repeat(size, size)
        total += np.bincount(
            request[i] * n_requests + request[j],
            weights=weight[i] * weight[j] / cell_weight[cell[i]],
            minlength=n_requests * n_requests,
        )
    return total.reshape(n_requests, n_requests)


def _links(starts: np.ndarray, counts: np.ndarray, request: np.ndarray) -> np.ndarray:
    """Request pairs that share a cell (observations sorted by cell): each observation linked
    to its cell's first request, a star per cell that connects what every pair would."""
    first = np.repeat(request[starts], counts)
    return np.unique(np.column_stack([first, request])[first != request], axis=0)


def _fit_offsets(
    cell: np.ndarray, request: np.ndarray, y: np.ndarray, weight: np.ndarray, n_requests: int
) -> np.ndarray:
    """Weighted least-squares request offsets a (a[first informative request] = 0)."""
    per_cell = np.bincount(cell)
    shared = per_cell[cell] >= 2  # cells seen by one request only do not inform the offsets
    c, starts, counts, w, yy, ww = _by_cell(
        cell[shared], request[shared], y[shared], weight[shared]
    )
    cell_weight = np.bincount(c, weights=ww, minlength=per_cell.size)
    cell_mean = np.bincount(c, weights=ww * yy, minlength=per_cell.size) / np.maximum(
        cell_weight, np.finfo(float).tiny
    )
    matrix = np.diag(np.bincount(w, weights=ww, minlength=n_requests))
    rhs = np.bincount(w, weights=ww * (yy - cell_mean[c]), minlength=n_requests)
    if c.size:
        matrix -= _shared_cell_terms(c, starts, counts, w, ww, cell_weight, n_requests)

    informative = set(np.unique(request).tolist())  # requests with at least one cell ≥ τ
    groups = [
        group
        for group in _connected_groups(n_requests, _links(starts, counts, w))
        if informative.intersection(group)
    ]
    if len(groups) > 1:
        sizes = ", ".join(str(len(group)) for group in groups)
        raise DisconnectedRequests(
            f"requests fall into {len(groups)} groups ({sizes} requests) that share no cell "
            "≥ τ; add overlapping windows or a better anchor keyword"
        )
    offsets = np.zeros(n_requests)
    if groups:
        solve = np.array([i for i in groups[0] if i != groups[0][0]], dtype=int)
        if solve.size:
            system = matrix[np.ix_(solve, solve)]
            offsets[solve] = np.linalg.lstsq(system, rhs[solve], rcond=None)[0]
    return offsets


def _weights(values: np.ndarray, sampling_noise: float) -> np.ndarray:
    """Inverse variance of log(value): sampling noise plus integer rounding (sd ≈ 0.29/value)."""
    return 1.0 / (sampling_noise**2 + (ROUNDING_SD / values) ** 2)


def _indexed(
    frame: pd.DataFrame, tau: float
) -> tuple[np.ndarray, pd.MultiIndex, np.ndarray, np.ndarray]:
    """(cell index, cell keys, request index, cells that drive the fit) of validated cells."""
    cell, cell_keys = pd.factorize(pd.MultiIndex.from_frame(frame[["keyword", "period_start"]]))
    request, _ = pd.factorize(frame["request_id"])
    fits = (frame["value"].to_numpy() >= tau) & ~frame["is_partial"].to_numpy()
    return cell, cell_keys, request, fits


def estimate_sampling_noise(cells: pd.DataFrame, tau: float = DEFAULT_TAU) -> float:
    """Per-fetch sampling noise (sd of log value) measured where requests share a cell.

    After a first fit, a cell seen by n requests leaves n − 1 degrees of freedom of residual
    variance; what rounding does not explain is sampling noise. Weighting by the measured
    noise rather than a guess matters: with exact data the large values should dominate (their
    rounding error is smallest), with noisy data every cell counts about the same.
    Returns ``DEFAULT_SAMPLING_NOISE`` when no cell is shared.
    """
    frame = _validated(cells)
    if frame.empty:
        return DEFAULT_SAMPLING_NOISE
    cell, _, request, fits = _indexed(frame, tau)
    values = frame["value"].to_numpy()[fits]
    cell, request, y = cell[fits], request[fits], np.log(values)
    if cell.size == 0:
        return DEFAULT_SAMPLING_NOISE
    weight = _weights(values, DEFAULT_SAMPLING_NOISE)
    offsets = _fit_offsets(cell, request, y, weight, int(request.max()) + 1)
    level = y - offsets[request]
    count = np.bincount(cell)
    shared = count[cell] >= 2
    if not shared.any():
        return DEFAULT_SAMPLING_NOISE
    mean = np.bincount(cell, weights=level) / np.maximum(count, 1)
    freedom = (count[cell] - 1) / count[cell]  # E[residual²] = freedom · variance
    residual = (level - mean[cell])[shared] ** 2
    rounding = (ROUNDING_SD / values[shared]) ** 2 * freedom[shared]
    variance = (residual.sum() - rounding.sum()) / freedom[shared].sum()
    return max(float(np.sqrt(max(variance, 0.0))), MIN_SAMPLING_NOISE)


def joint_scale(
    cells: pd.DataFrame, tau: float = DEFAULT_TAU, sampling_noise: float | None = None
) -> pd.DataFrame:
    """One consistent series per keyword from overlapping requests (all of one resolution).

    ``cells``: columns ``request_id, keyword, period_start, value`` (0..100), optionally
    ``below_one`` ("<1") and ``is_partial``. Returns ``keyword, period_start, value,
    observations`` with the overall maximum scaled to 100; ``observations`` counts the
    fetched cells combined into each value. ``sampling_noise`` (sd of log value per fetch)
    sets the weights; by default it is measured from the cells (:func:`estimate_sampling_noise`).
    """
    frame = _validated(cells)
    if frame.empty:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    if sampling_noise is None:
        sampling_noise = estimate_sampling_noise(frame, tau)
    cell, cell_keys, request, fits = _indexed(frame, tau)
    values = frame["value"].to_numpy()

    y = np.log(values[fits])
    weight = _weights(values[fits], sampling_noise)
    offsets = _fit_offsets(cell[fits], request[fits], y, weight, int(request.max()) + 1)

    n_cells = len(cell_keys)
    fitted_count = np.bincount(cell[fits], minlength=n_cells)
    fitted_weight = np.bincount(cell[fits], weights=weight, minlength=n_cells)
    level_sum = np.bincount(
        cell[fits], weights=weight * (y - offsets[request[fits]]), minlength=n_cells
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        fitted = np.exp(level_sum / fitted_weight)

    # Cells below τ are placed with the fitted offsets but never move them.
    placed_values = np.where(frame["below_one"].to_numpy() & (values == 0), BELOW_ONE_VALUE, values)
    placing = ~fits & (fitted_count[cell] == 0)
    placed_count = np.bincount(cell[placing], minlength=n_cells)
    placed_sum = np.bincount(
        cell[placing],
        weights=placed_values[placing] / np.exp(offsets[request[placing]]),
        minlength=n_cells,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        placed = np.where(placed_count > 0, placed_sum / placed_count, 0.0)

    level = np.where(fitted_count > 0, fitted, placed)
    result = pd.DataFrame(
        {
            "keyword": cell_keys.get_level_values(0),
            "period_start": cell_keys.get_level_values(1),
            "value": level,
            "observations": np.where(fitted_count > 0, fitted_count, placed_count),
        }
    )
    return _finish(result)


def _finish(result: pd.DataFrame) -> pd.DataFrame:
    peak = result["value"].max()
    if peak > 0:
        result["value"] = result["value"] * (100.0 / peak)
    result["observations"] = result["observations"].astype(int)
    return result.sort_values(["keyword", "period_start"], ignore_index=True)[OUTPUT_COLUMNS]


# --- baseline ------------------------------------------------------------------------------


def _chain_factor(previous: pd.Series, current: pd.Series, tau: float, what: str) -> float:
    """Σ previous / Σ current over the overlap cells where both are ≥ τ (else both > 0)."""
    both = pd.concat([previous, current], axis=1, join="inner", keys=["before", "after"])
    for floor in (tau, np.nextafter(0, 1)):
        usable = both[(both["before"] >= floor) & (both["after"] >= floor)]
        if not usable.empty:
            return float(usable["before"].sum() / usable["after"].sum())
    raise DisconnectedRequests(f"{what}: no overlapping non-zero cells to chain on")


def chain_by_overlap_ratio(cells: pd.DataFrame, tau: float = DEFAULT_TAU) -> pd.DataFrame:
    """Baseline: chain windows in time order by overlap-sum ratios, then batches by anchor.

    Within each keyword batch, window j is scaled onto window j−1 by the ratio of their sums
    over overlapping cells ≥ τ; overlapping rescaled values are averaged. Batches are then
    scaled onto each other through their shared (anchor) keyword. Same output as
    :func:`joint_scale`.
    """
    frame = _validated(cells)
    if frame.empty:
        return pd.DataFrame(columns=OUTPUT_COLUMNS)
    frame["value"] = np.where(frame["below_one"] & (frame["value"] == 0), 0.0, frame["value"])
    series = frame.set_index(["keyword", "period_start"])
    batch_of = frame.groupby("request_id", sort=False)["keyword"].agg(
        lambda k: tuple(sorted(set(k)))
    )
    first_day = frame.groupby("request_id", sort=False)["period_start"].min()

    batch_series: dict[tuple[str, ...], pd.DataFrame] = {}
    for batch, request_ids in batch_of.groupby(batch_of, sort=False):
        ordered = first_day.loc[request_ids.index].sort_values(kind="stable").index
        scaled, previous, factor = [], None, 1.0
        for request_id in ordered:
            current = series[frame["request_id"].to_numpy() == request_id]["value"]
            if previous is not None:
                factor *= _chain_factor(previous, current, tau, f"window {request_id}")
            scaled.append(current * factor)
            previous = current  # c_j = c_(j-1) · Σ r_(j-1) / Σ r_j uses raw values
        combined = pd.concat(scaled)
        batch_series[batch] = combined.groupby(level=[0, 1]).agg(["mean", "count"])

    # Scale batches onto the first (largest) one through shared anchor keywords.
    order = sorted(batch_series, key=lambda b: -len(b))
    done = {order[0]: batch_series[order[0]]}
    pending = order[1:]
    while pending:
        for batch in pending:
            partner = next((d for d in done if set(d) & set(batch)), None)
            if partner is None:
                continue
            anchor = sorted(set(partner) & set(batch))[0]
            known = done[partner].loc[anchor, "mean"]
            new = batch_series[batch].loc[anchor, "mean"]
            factor = _chain_factor(known, new, 0.0, f"batch {batch} via {anchor}")
            rescaled = batch_series[batch].copy()
            rescaled["mean"] *= factor
            done[batch] = rescaled
            pending.remove(batch)
            break
        else:
            raise DisconnectedRequests(f"batches {pending} share no keyword with the others")

    stacked = pd.concat(done.values())
    merged = stacked.groupby(level=[0, 1]).agg(
        value=("mean", "mean"), observations=("count", "sum")
    )
    return _finish(merged.reset_index())
