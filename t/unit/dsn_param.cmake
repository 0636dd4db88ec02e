# mta/receive/dsn_param.c: RFC 3461 parameters (xtext, NOTIFY, ORCPT, RET).
outpost_unit_test(dsn_param_test
	SOURCES ${CMAKE_CURRENT_LIST_DIR}/dsn_param_test.c
	DEPS outpost_receive)
