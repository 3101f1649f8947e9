"""Test machinery, used by the test suite and the benchmarks, never by training:
`local_ranks.run_ranks` (forked gloo ranks), `recording` (every mask a backend applies),
`faults` (failures on demand, GRADDROP_FAULT)."""
