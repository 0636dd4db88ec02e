outpost_unit_test(mta_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/mta_test.c
	DEPS outpost_receive)
outpost_unit_test(auth_limit_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/auth_limit_test.c
	DEPS outpost_receive)
outpost_unit_test(htab_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/htab_test.c
	DEPS outpost_core)
outpost_unit_test(json_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/json_test.c
	DEPS outpost_core)
outpost_unit_test(control_json_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/control_json_test.c DEPS outpost_control)
outpost_unit_test(sockio_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/sockio_test.c DEPS outpost_core)
