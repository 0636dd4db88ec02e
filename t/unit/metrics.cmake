# mta/observe/metrics.c: the Prometheus endpoint (loopback HTTP; promtool
# when installed).
outpost_unit_test(metrics_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_test.c
	DEPS outpost_observe)

# mta/observe/metrics_top.c: top N label values and "_other", user labels,
# the lock-free user accept counters.
outpost_unit_test(metrics_top_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_top_test.c
	DEPS outpost_observe)
