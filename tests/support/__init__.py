"""Shared test support: small test images (`images`), real servers in-process
(`server`) or as a subprocess (`process`), and a Prometheus scraper (`metrics`).

Other test modules import these; keep their APIs small and stable.
"""
