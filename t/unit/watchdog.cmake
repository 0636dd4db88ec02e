# The watchdog: its signal math (mta/observe/watchdog_sig.c) and the
# recipient history it reads (queue/seen.c).
outpost_unit_test(watchdog_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/watchdog_test.c
	DEPS outpost_observe)
outpost_unit_test(queue_seen_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/queue_seen_test.c
	${CMAKE_CURRENT_LIST_DIR}/queue_fixture.c DEPS outpost_queue)
# conf/conf_watchdog.c: the sections watchdog and watchdog_override.
outpost_unit_test(conf_test_watchdog
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/conf_test_watchdog.c
		${CMAKE_CURRENT_LIST_DIR}/conf_test_util.c
	DEPS outpost_conf)
