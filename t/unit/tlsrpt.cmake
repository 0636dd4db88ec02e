outpost_unit_test(tlsrpt_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tlsrpt_test.c
	DEPS outpost_deliver)
