"""`python -m kokoyi ...` runs the `kokoyi` command line."""
import sys

from kokoyi.cli import main

sys.exit(main())
