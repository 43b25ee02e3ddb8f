"""pyfuse3 on trio: the mount directory of virtual database files (see operations.py)."""
