"""`python -m pgfs ...`: the same CLI as the `pgfs` console script."""

from pgfs.cli import main

main()
