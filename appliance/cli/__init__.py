"""`zrkeyring` command line: argument parsing and output, one module per command group.

The commands call into the packages that do the work; nothing below this package imports it.
"""
