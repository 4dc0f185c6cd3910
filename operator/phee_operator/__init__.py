"""The phee Kubernetes operator (kopf): PaymentHub and PaymentEngine custom resources -> the
objects that run them. The folder is `operator/`; the package is not called `operator` because
that would shadow the standard library module."""
