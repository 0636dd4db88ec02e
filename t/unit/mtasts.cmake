outpost_unit_test(mtasts_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/mtasts_test.c
	DEPS outpost_deliver)
