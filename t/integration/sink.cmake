# Self-test of outpost-sink (t/tools/sink*.c), the receiver that plays the
# remote MX hosts in delivery tests and benchmarks.
outpost_integration_test(sink t/integration/sink_test.py)
