"""``python -m fer_stream`` runs the command line."""

from .cli import main

raise SystemExit(main())
