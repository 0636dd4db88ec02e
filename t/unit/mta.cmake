outpost_unit_test(mta_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/mta_test.c
	DEPS outpost_mta)
