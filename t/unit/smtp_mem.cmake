# mta/receive/smtp_mem.c: the body memory budget's policy, without sockets.
outpost_unit_test(smtp_mem_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/smtp_mem_test.c
	DEPS outpost_receive)
