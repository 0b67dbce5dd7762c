"""Deployment: the serving bundle, the BentoML service, the prediction log, batch inference and edge export."""
