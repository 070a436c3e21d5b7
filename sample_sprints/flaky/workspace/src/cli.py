"""`python -m src.cli FILE` prints the parsed settings."""

import sys

from src.api import settings

if __name__ == "__main__":
    print(settings(open(sys.argv[1]).read()))
