"""`python -m training.bench` runs the `gmos-bench` command line."""

from training.bench.cli import main

raise SystemExit(main())
