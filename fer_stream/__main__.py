"""``python -m fer_stream`` runs the command line."""

from fer_stream.cli import main

raise SystemExit(main())
