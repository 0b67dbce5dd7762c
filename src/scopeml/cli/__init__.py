"""Entry points of the scopeml commands: one module per command, each a table of contents."""
