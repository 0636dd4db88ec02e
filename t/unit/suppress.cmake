# mta/observe/suppress.c: the rule that feeds the suppression list from
# results and complaints, the RCPT verdict per scope and action, retention.
outpost_unit_test(suppress_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/suppress_test.c
	${CMAKE_CURRENT_LIST_DIR}/queue_fixture.c
	DEPS outpost_observe outpost_queue
	LIBS PkgConfig::SODIUM Threads::Threads)
