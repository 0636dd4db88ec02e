# mta/observe/metrics.c: the Prometheus endpoint (loopback HTTP; promtool
# when installed).
outpost_unit_test(metrics_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_test.c
	DEPS outpost_observe)
