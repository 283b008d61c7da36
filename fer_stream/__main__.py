"""``python -m fer_stream`` runs the command line."""

from fer_stream.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
