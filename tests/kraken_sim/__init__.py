"""Tests of the local Kraken simulator (kraken_sim), with raw clients only."""
