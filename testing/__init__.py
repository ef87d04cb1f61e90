"""Builders shared by the tests, the benchmarks and the demo stream (`ops.demo`): sample events, test processes."""
