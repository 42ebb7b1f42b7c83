"""`python -m gmos_ros.bag` runs the `gmos-bag` command line."""

from gmos_ros.bag.cli import main

raise SystemExit(main())
