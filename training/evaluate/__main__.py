"""`python -m training.evaluate` runs the `gmos-eval` command line."""

from training.evaluate.cli import main

raise SystemExit(main())
