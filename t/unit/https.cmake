outpost_unit_test(https_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/https_test.c
	DEPS outpost_deliver)
