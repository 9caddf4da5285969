"""oaiod: keeps local folders and oaio objects in sync through an oaio server and cloud storage hosts."""

__version__ = "0.1.0"
