"""``python -m aimfair_bench``: the benchmark command line (same as ``aimfair-bench``)."""

from .cli import main

raise SystemExit(main())
