"""`python -m scaling.flops`: the command of scaling/flops/cli.py (the library never imports its CLI)."""
import sys

from scaling.flops import cli

sys.exit(cli.main())
