# The watchdog: its signal math (mta/observe/watchdog_sig.c) and the
# recipient history it reads (queue/seen.c).
outpost_unit_test(watchdog_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/watchdog_test.c
	DEPS outpost_observe)
outpost_unit_test(queue_seen_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/queue_seen_test.c
	${CMAKE_CURRENT_LIST_DIR}/queue_fixture.c DEPS outpost_queue)
