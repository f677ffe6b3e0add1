"""``python -m probepair`` runs the command line."""

from probepair.cli import main

raise SystemExit(main())
