# mta/metrics.c: the Prometheus endpoint (loopback HTTP; promtool when
# installed).  Registered once outpost_mta carries metrics.c and evlog.c
# (metrics.c reads evlog_stats_get): until then it would not link.
get_target_property(_outpost_mta_src outpost_mta SOURCES)
if("metrics.c" IN_LIST _outpost_mta_src AND "evlog.c" IN_LIST _outpost_mta_src)
	outpost_unit_test(metrics_test
		SOURCES ${CMAKE_CURRENT_LIST_DIR}/metrics_test.c
		DEPS outpost_mta)
else()
	message(STATUS "metrics_test: not built (mta/CMakeLists.txt lacks "
		"metrics.c or evlog.c)")
endif()
