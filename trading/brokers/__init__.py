"""Brokers: where orders go. `base` (what every broker takes and answers, Django-free), `kraken` (live), `paper`
(fills against the exchange's book, sends nothing), `factory` (the broker and the Kraken clients for the configured
mode)."""
