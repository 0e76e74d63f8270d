"""cxloop: the customer-experience pipeline."""
