"""Uncertainty: the measured loss noise, the resampling plans behind every interval, synthetic tables
drawn from a known law to calibrate them."""
