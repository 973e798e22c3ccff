"""Tests of tether.evals: campaign statistics, reports and comparisons."""
