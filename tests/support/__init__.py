"""Shared test support: small test images (`images`), real servers in-process or
as a subprocess (`server`), and a Prometheus scraper (`metrics`).

Other test modules import these; keep their APIs small and stable.
"""
