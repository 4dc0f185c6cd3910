"""The callback router: the DFSP's one public FSPIOP endpoint in front of several engines."""
