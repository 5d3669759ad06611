"""`python -m retrieval_lib ...`: the command line (retrieval_lib/cli.py)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
