"""`python -m curriclab ...` runs the command-line interface (`curriclab.ui.cli`)."""

from curriclab.ui.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
