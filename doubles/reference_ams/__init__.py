"""Reference AMS: a small core-banking service with a real double-entry SQL ledger.

It stands where a DFSP's core banking system stands: payment engines look payees up, quote,
block, book, release and credit money here, idempotently by transactionId. See README.md.
"""
