"""Tests of the versioned compare-and-set storage and its three backends."""
