outpost_unit_test(outcome_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/outcome_test.c
	DEPS outpost_deliver)
