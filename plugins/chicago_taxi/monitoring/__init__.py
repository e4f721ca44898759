"""Monitoring: the prediction log, ground truth, model quality, drift, champion vs challenger."""
