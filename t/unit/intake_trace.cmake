# mta/receive/intake_trace.c: Message-ID and campaign from the header block.
outpost_unit_test(intake_trace_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/intake_trace_test.c
	DEPS outpost_receive)
