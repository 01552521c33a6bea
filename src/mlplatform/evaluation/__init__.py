"""Model evaluation: slice columns from the spec, sliced metrics with TFMA, the fairness gate."""
