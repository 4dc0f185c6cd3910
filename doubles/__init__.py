"""Test doubles of a DFSP's peers for demos, load and tests: a reference AMS and a switch double.

They stand where a bank's core system and the Mojaloop switch stand in production. Conformance
is tested against the real Mojaloop Testing Toolkit; these exist for speed and fault injection.
"""
