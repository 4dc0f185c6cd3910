"""A fast Mojaloop switch double: async FSPIOP routing, a simulated payee DFSP, fault injection.

For demos and load (the Testing Toolkit manages a few flows per second); conformance is tested
against the real Testing Toolkit. See README.md in this folder.
"""
