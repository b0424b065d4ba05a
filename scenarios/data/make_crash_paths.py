"""Derive the bundled 2025-10-10 crash price paths from Gemini spot trades.

Reads ``gemini_trades_{BTCUSD,ETHUSD,SOLUSD}.csv.gz`` (columns ``exchange, symbol, timestamp,
local_timestamp, id, side, price, amount``; ``timestamp`` in microseconds since the epoch) from
the directory given as the first argument, keeps the trades of the window
[20:45:00, 22:15:00) UTC on 2025-10-10, and writes for each symbol the LAST trade of every
one-second bucket that has trades (buckets without a trade are omitted) as
``timestamp,price``, where ``timestamp`` is that trade's own exchange timestamp in
microseconds. Trades in the same microsecond keep the file's order (ascending trade id).

Usage::

    python scenarios/data/make_crash_paths.py /path/to/shared/data/2025-10-10 [--out DIR]

It prints the figures quoted in ``scenarios/data/README.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SYMBOLS = {"BTCUSD": "btc", "ETHUSD": "eth", "SOLUSD": "sol"}
WINDOW_START = pd.Timestamp("2025-10-10T20:45:00Z")
WINDOW_END = pd.Timestamp("2025-10-10T22:15:00Z")
BUCKET_US = 1_000_000
GAP_REPORT_S = 60.0


def _us(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000)  # Timestamp.value is nanoseconds since the epoch


def _fmt(us: int) -> str:
    return pd.Timestamp(us, unit="us", tz="UTC").strftime("%H:%M:%S.%f")[:-3]


def crash_path(trades: pd.DataFrame, bucket_us: int = BUCKET_US) -> pd.DataFrame:
    """Last trade per bucket inside the window, as ``timestamp,price`` (timestamp in us).

    Args:
        trades: raw trades with integer ``timestamp`` (us) and ``price`` columns.
        bucket_us: bucket length in microseconds.

    Returns:
        One row per bucket that has trades, in time order.
    """
    t = trades["timestamp"].to_numpy()
    keep = (t >= _us(WINDOW_START)) & (t < _us(WINDOW_END))
    w = trades.loc[keep, ["timestamp", "price"]].sort_values("timestamp", kind="stable")
    last = w.groupby(w["timestamp"] // bucket_us, sort=True).tail(1)
    return last.reset_index(drop=True)


def describe(name: str, raw: pd.DataFrame, path: pd.DataFrame) -> None:
    """Print high, low, their times, trade counts and gaps longer than a minute."""
    t = raw["timestamp"].to_numpy()
    w = raw.loc[(t >= _us(WINDOW_START)) & (t < _us(WINDOW_END))].reset_index(drop=True)
    hi, lo = w["price"].idxmax(), w["price"].idxmin()
    print(
        f"{name}: {len(w)} trades -> {len(path)} rows; first {_fmt(w.timestamp.iloc[0])} "
        f"{w.price.iloc[0]}, last {_fmt(w.timestamp.iloc[-1])} {w.price.iloc[-1]}; "
        f"high {w.price[hi]} at {_fmt(w.timestamp[hi])}, low {w.price[lo]} at {_fmt(w.timestamp[lo])}; "
        f"file low {path.price.min()} at {_fmt(path.timestamp[path.price.idxmin()])}"
    )
    gaps = w["timestamp"].diff() / 1e6
    for i in gaps.index[gaps > GAP_REPORT_S]:
        print(
            f"    no trades for {gaps[i]:.1f} s: {_fmt(w.timestamp[i - 1])} ({w.price[i - 1]}) "
            f"-> {_fmt(w.timestamp[i])} ({w.price[i]})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="directory holding gemini_trades_*.csv.gz")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output directory")
    parser.add_argument("--bucket-seconds", type=int, default=1, help="bucket length (default 1 s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for symbol, short in SYMBOLS.items():
        src = args.source / f"gemini_trades_{symbol}.csv.gz"
        if not src.exists():
            raise FileNotFoundError(f"{src} not found (expected Gemini trades for {symbol})")
        raw = pd.read_csv(src, usecols=["timestamp", "price"])
        path = crash_path(raw, args.bucket_seconds * BUCKET_US)
        dest = args.out / f"{short}_2025-10-10.csv"
        path.to_csv(dest, index=False)
        describe(symbol, raw, path)
        print(f"    wrote {dest} ({dest.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
