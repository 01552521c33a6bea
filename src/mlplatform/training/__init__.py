"""Model development: datasets and splits, preprocessing, the three candidate families."""
